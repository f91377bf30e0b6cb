"""DARTS-space steps after the search: CIFAR-10 retraining and ImageNet transfer of a searched genotype.

Same pattern as `isdarts.workflows.search_nb201`: validate every input before any training, resume from the
per-epoch checkpoint (continuing the same MLflow run), and write outputs atomically only once a run finished,
so a failed or killed run leaves nothing for DVC to cache.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isdarts.data.cifar import CifarArrays, DataError
from isdarts.io import atomic_write_json, replace_dir
from isdarts.spaces.darts_genotype import DartsGenotype, GenotypeError

if TYPE_CHECKING:  # the trainers pull in torchvision and the DDP stack; load them only when used
    from isdarts.train.imagenet_transfer import ImagenetConfig
    from isdarts.train.retrain import RetrainConfig

log = logging.getLogger(__name__)

RETRAIN_EXPERIMENT = "isdarts-darts-retrain"
IMAGENET_EXPERIMENT = "isdarts-imagenet"
METRICS_NAME = "metrics.json"
HISTORY_NAME = "history.json"
RUN_INFO_KEYS = ("method", "profile", "paper_settings", "paper_mismatches")
RETRAIN_LOGGED = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "drop_path", "images_per_s")
IMAGENET_LOGGED = ("train_loss", "val_loss", "top1_error", "top5_error", "lr", "images_per_s")
# Keys the workflows compute themselves; run_info may not override them.
_OWN_KEYS = (
    "space", "genotype", "genotype_file", "search_hours", "search_cost_unit", "image_size", "train_images",
    "test_images", "seed", "epochs", "config", "params_m", "data", "world_size",
)


# ----------------------------------------------------------------------------- shared inputs


def read_genotype(path: Path) -> DartsGenotype:
    """The genotype JSON a search wrote; errors name the file (and, from the genotype module, the entry)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"genotype file {path} not found; run the DARTS search stage that writes it first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenotypeError(f"{path} is not valid JSON ({exc}); re-run the search that wrote it") from exc
    try:
        return DartsGenotype.from_json(data)
    except GenotypeError as exc:
        raise GenotypeError(f"{path}: {exc}") from exc


def search_cost(genotype_file: Path) -> tuple[float | None, str | None]:
    """(search_hours, cost_unit) from the search's metrics.json beside the genotype; (None, None) without one."""
    path = Path(genotype_file).parent / METRICS_NAME
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); re-run the search that wrote it") from exc
    if not isinstance(data, Mapping):
        raise DataError(f"{path} holds a {type(data).__name__}, not the search's metrics object")
    return data.get("search_hours"), data.get("cost_unit")


def check_run_info(run_info: Mapping[str, Any]) -> None:
    """run_info describes the run for the results files; a missing or clashing key is the caller's bug."""
    missing = [k for k in RUN_INFO_KEYS if k not in run_info]
    if missing:
        raise ValueError(f"run_info lacks {missing}; it needs at least {list(RUN_INFO_KEYS)}")
    if not isinstance(run_info["paper_settings"], bool):
        raise ValueError(f"run_info['paper_settings'] must be a bool, got {run_info['paper_settings']!r}")
    if not isinstance(run_info["paper_mismatches"], list | tuple):
        raise ValueError(f"run_info['paper_mismatches'] must be a list, got {run_info['paper_mismatches']!r}")
    clash = sorted(set(run_info) & set(_OWN_KEYS))
    if clash:
        raise ValueError(f"run_info may not set {clash}: the workflow computes them")


def _merge(computed: dict[str, Any], run_info: Mapping[str, Any]) -> dict[str, Any]:
    clash = sorted(set(run_info) & set(computed) - set(RUN_INFO_KEYS))
    if clash:
        raise ValueError(f"run_info may not set {clash}: the workflow computes them")
    return {**computed, **run_info, "paper_mismatches": list(run_info["paper_mismatches"])}


def _run_name(kind: str, run_info: Mapping[str, Any], seed: int) -> str:
    name = f"darts-{kind}-{run_info['method']}-seed{seed}"
    return f"{name}-rate{run_info['rate_label']}" if "rate_label" in run_info else name


def _write_pair(out_dir: Path, metrics: dict[str, Any], history: dict[str, Any]) -> None:
    """history.json, then metrics.json (what marks a finished run); never one without the other."""
    atomic_write_json(out_dir / HISTORY_NAME, history)
    try:
        atomic_write_json(out_dir / METRICS_NAME, metrics)
    except BaseException:
        (out_dir / HISTORY_NAME).unlink(missing_ok=True)
        raise


def _tracker_hooks(
    tracker: Any, run_name: str, params: dict[str, Any], tags: dict[str, str], logged: tuple[str, ...]
) -> tuple[Any, Any]:
    """The trainers' on_start/on_epoch callbacks: open (or, after a kill, reopen) one MLflow run whose id
    travels in the checkpoint, and log the `logged` keys of every epoch record."""

    def on_start(extra: dict[str, Any]) -> dict[str, Any]:
        run_id = tracker.start(run_name, params=params, tags=tags, resume_run_id=extra.get("mlflow_run_id"))
        return {**extra, "mlflow_run_id": run_id}

    def on_epoch(record: dict[str, Any]) -> None:
        tracker.log_metrics({k: record[k] for k in logged}, step=record["epoch"])

    return on_start, on_epoch


def _end(tracker: Any, exc: BaseException) -> None:
    if tracker is not None:
        tracker.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")


# ----------------------------------------------------------------------------- CIFAR-10 retraining


def retrain_run(
    genotype_file: Path,
    cfg: RetrainConfig,
    arrays: CifarArrays,
    *,
    image_size: int,
    train_images: int | None,
    test_images: int | None,
    seed: int,
    device: str,
    out_dir: Path,
    checkpoint_dir: Path,
    run_info: dict[str, Any],
    stage: str | None = None,
    progress: bool = False,
    stop_after_epochs: int | None = None,
    tracking: bool = True,
) -> dict[str, Any]:
    """Retrain the genotype in `genotype_file` on CIFAR-10, resumably, tracked in MLflow.

    Writes out_dir/metrics.json and out_dir/history.json once the last epoch is done and returns the metrics;
    when `stop_after_epochs` cuts the run short it returns {"finished": False, ...} and writes nothing.
    """
    from isdarts.data.downsample import reduce_cifar
    from isdarts.tracking import Tracker, standard_tags
    from isdarts.train.retrain import retrain_cifar

    genotype_file, out_dir, checkpoint_dir = Path(genotype_file), Path(out_dir), Path(checkpoint_dir)
    genotype = read_genotype(genotype_file)
    check_run_info(run_info)
    search_hours, search_unit = search_cost(genotype_file)
    data = reduce_cifar(arrays, image_size=image_size, train_images=train_images, test_images=test_images)

    method = run_info["method"]
    tracker = Tracker(experiment=RETRAIN_EXPERIMENT, enabled=tracking)
    tags = {
        **standard_tags(seed=seed, space="darts", method=method, stage=stage, profile=run_info["profile"]),
        "genotype": str(genotype), "genotype_file": str(genotype_file),
    }
    params = {
        "retrain": dataclasses.asdict(cfg), "seed": seed, "device": device, "image_size": image_size,
        "train_images": len(data.train_y), "test_images": len(data.test_y), "run_info": dict(run_info),
    }

    on_start, on_epoch = _tracker_hooks(tracker, _run_name("retrain", run_info, seed), params, tags, RETRAIN_LOGGED)

    try:
        result = retrain_cifar(
            genotype, data, cfg, device=device, seed=seed, checkpoint_dir=checkpoint_dir, progress=progress,
            stop_after_epochs=stop_after_epochs, on_start=on_start, on_epoch=on_epoch,
        )
        if not result["finished"]:
            tracker.end("KILLED")  # as a kill would leave it; the next call reopens the same run
            return result
        metrics = _merge(
            {
                **result["metrics"], "space": "darts", "genotype": str(genotype), "genotype_file": str(genotype_file),
                "search_hours": search_hours, "search_cost_unit": search_unit, "image_size": image_size,
                "train_images": len(data.train_y), "test_images": len(data.test_y),
            },
            run_info,
        )
        _write_pair(out_dir, metrics, {"epochs": result["history"]})
    except BaseException as exc:
        _end(tracker, exc)
        raise
    tracker.log_metrics(
        {k: metrics[k] for k in ("final_test_acc", "final_test_error", "best_test_acc", "params_m")},
        step=metrics["epochs"],
    )
    tracker.log_artifact(out_dir / METRICS_NAME)
    tracker.end("FINISHED")
    return metrics


# ----------------------------------------------------------------------------- ImageNet data


def build_tiny_imagefolder(
    arrays: CifarArrays, tiny_dir: Path, *, train_per_class: int, val_per_class: int
) -> Path:
    """train/ from the first images of each class of the training split, val/ from the test split, as PNGs.

    Built beside `tiny_dir` and swapped in whole, so a failure leaves the old tree (or none), never half a tree.
    """
    from isdarts.data.imagefolder import make_tiny_imagefolder

    for key, n in (("train_per_class", train_per_class), ("val_per_class", val_per_class)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{key} must be a positive number of images per class, got {n!r}")
    tiny_dir = Path(tiny_dir)
    tiny_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{tiny_dir.name}.tmp-", dir=tiny_dir.parent))
    try:
        make_tiny_imagefolder(tmp, arrays.train_x, arrays.train_y, arrays.classes, train_per_class, split="train")
        make_tiny_imagefolder(tmp, arrays.test_x, arrays.test_y, arrays.classes, val_per_class, split="val")
        replace_dir(tmp, tiny_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tiny_dir


def prepare_imagenet_data(
    root: Path | None,
    *,
    prepared_dir: Path,
    tiny_dir: Path,
    manifest_path: Path,
    train_per_class: int,
    val_per_class: int,
) -> dict[str, Any]:
    """(Re)build the tiny ImageFolder tree from the prepared CIFAR-10, check the tree training will use, and
    write its manifest: `root` (real ImageNet) when given, else the tiny tree.

    A missing, empty or malformed `root` raises DataError (naming the path and the expected layout) and leaves
    no manifest, so the transfer stage cannot start on it.
    """
    from isdarts.data.cifar import load_prepared
    from isdarts.data.imagefolder import check_imagefolder

    manifest_path = Path(manifest_path)
    manifest_path.unlink(missing_ok=True)  # a stale manifest would point training at the previous tree
    arrays, _ = load_prepared(Path(prepared_dir))
    build_tiny_imagefolder(arrays, Path(tiny_dir), train_per_class=train_per_class, val_per_class=val_per_class)
    used = Path(root) if root is not None else Path(tiny_dir)
    manifest = {**check_imagefolder(used), "tiny": root is None, "root": str(used)}
    atomic_write_json(manifest_path, manifest)
    return manifest


def read_imagenet_manifest(manifest_path: Path) -> dict[str, Any]:
    path = Path(manifest_path)
    fix = "run the prepare_imagenet step first"
    if not path.is_file():
        raise DataError(f"ImageNet manifest {path} not found; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"ImageNet manifest {path} is not valid JSON ({exc}); {fix}") from exc
    missing = [k for k in ("root", "tiny", "counts") if not isinstance(data, Mapping) or k not in data]
    if missing:
        raise DataError(f"ImageNet manifest {path} lacks {missing}; {fix}")
    return data


# ----------------------------------------------------------------------------- ImageNet transfer


def _launch_world_size() -> int:
    """The world size torchrun announced (1 outside torchrun), known before joining the group."""
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_world_size()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 1
    return int(os.environ["WORLD_SIZE"])


def transfer_run(
    genotype_file: Path,
    cfg: ImagenetConfig,
    *,
    manifest_path: Path,
    seed: int,
    device: str,
    out_dir: Path,
    checkpoint_dir: Path,
    run_info: dict[str, Any],
    stage: str | None = None,
    tracking: bool = True,
) -> dict[str, Any] | None:
    """Train the genotype on the ImageFolder tree of the manifest, on one process or under torchrun
    (WORLD_SIZE > 1 joins the process group from the environment).

    Rank 0 alone tracks in MLflow, writes out_dir/metrics.json and out_dir/history.json and returns the metrics;
    other ranks return None. Inputs (genotype, manifest, tree, world size vs batch) are checked before training.
    """
    from isdarts.config import ConfigError
    from isdarts.data.imagefolder import check_imagefolder
    from isdarts.tracking import Tracker, standard_tags
    from isdarts.train import distributed as ddp
    from isdarts.train.imagenet_transfer import check_input_size, train_imagenet
    from isdarts.train.runtime import resolve_device

    genotype_file, out_dir, checkpoint_dir = Path(genotype_file), Path(out_dir), Path(checkpoint_dir)
    genotype = read_genotype(genotype_file)
    check_run_info(run_info)
    check_input_size(cfg)
    search_hours, search_unit = search_cost(genotype_file)
    recorded = read_imagenet_manifest(manifest_path)
    root = Path(recorded["root"])
    manifest = check_imagefolder(root)
    if manifest["counts"] != recorded["counts"]:
        raise DataError(
            f"the ImageFolder tree at {root} changed since {manifest_path} was written (class folders or image "
            f"counts differ); run the prepare_imagenet step again"
        )
    world = _launch_world_size()
    try:
        ddp.per_rank_batch(cfg.batch_size, world)
    except ValueError as exc:
        raise ConfigError(f"imagenet batch_size {cfg.batch_size} with {world} processes: {exc}") from exc
    dev = resolve_device(device)

    joined = False
    if world > 1 and not ddp.current_info().enabled:
        ddp.init_from_env(ddp.default_backend(dev))
        joined = True
    tracker = None
    try:
        info = ddp.current_info()
        if info.rank == 0:  # one MLflow run per training, however many processes train it
            tracker = Tracker(experiment=IMAGENET_EXPERIMENT, enabled=tracking)
        tags = {
            **standard_tags(seed=seed, space="darts", method=run_info["method"], stage=stage,
                            profile=run_info["profile"]),
            "genotype": str(genotype), "genotype_file": str(genotype_file), "world_size": str(info.world_size),
        }
        params = {"imagenet": dataclasses.asdict(cfg), "seed": seed, "device": device, "data_root": str(root),
                  "tiny": recorded["tiny"], "run_info": dict(run_info)}

        on_start, on_epoch = _tracker_hooks(
            tracker, _run_name("imagenet", run_info, seed), params, tags, IMAGENET_LOGGED
        )

        try:
            result = train_imagenet(
                genotype, root, cfg, checkpoint_dir=checkpoint_dir, seed=seed, device=device, manifest=manifest,
                on_start=on_start, on_epoch=on_epoch,
            )
            if result is None:
                return None
            history = result.pop("history")
            result["data"]["tiny"] = bool(recorded["tiny"])
            metrics = _merge(
                {
                    **result, "space": "darts", "genotype": str(genotype), "genotype_file": str(genotype_file),
                    "search_hours": search_hours, "search_cost_unit": search_unit,
                },
                run_info,
            )
            _write_pair(out_dir, metrics, {"epochs": history})
        except BaseException as exc:
            _end(tracker, exc)
            raise
        # top1/top5 are already logged per epoch; the model's size goes alongside the last one.
        tracker.log_metrics({k: metrics[k] for k in ("params_m", "madds_m")}, step=metrics["epochs"])
        tracker.log_artifact(out_dir / METRICS_NAME)
        tracker.end("FINISHED")
        return metrics
    finally:
        if joined:
            ddp.cleanup()
