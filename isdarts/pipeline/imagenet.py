"""The imagenet_data and transfer_imagenet stages: the ImageFolder tree (real ImageNet, or a tiny one made from
CIFAR-10) and its manifest, then a searched cell trained on it in the mobile setting, on one process or under
torchrun (one MLflow run and one set of outputs, from rank 0, however many processes train).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isdarts.config import ImagenetConfig, Params
from isdarts.data.cifar import CifarArrays, load_prepared
from isdarts.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, check_imagefolder, make_tiny_imagefolder
from isdarts.errors import ConfigError, DataError
from isdarts.io import atomic_write_json, replace_dir
from isdarts.pipeline.layout import (
    IMAGENET_MANIFEST,
    IMAGENET_TINY_DIR,
    PREPARED_DIR,
    checkpoint_dir_for,
    model_path_for,
    run_dir,
)
from isdarts.pipeline.runinfo import (
    check_run_info,
    merge_run_info,
    read_genotype,
    run_info_for,
    run_name,
    search_cost,
)
from isdarts.pipeline.tracked import tracked_run
from isdarts.spaces.darts.network import NetworkImageNet
from isdarts.tracking import standard_tags
from isdarts.train import distributed as ddp
from isdarts.train.epochs import METRICS_NAME, write_outputs
from isdarts.train.export import MODEL_NAME, export_inference, load_trained
from isdarts.train.imagenet import CHECKPOINT_NAME, check_input_size, train_imagenet
from isdarts.train.runtime import resolve_device

IMAGENET_EXPERIMENT = "isdarts-imagenet"
IMAGENET_LOGGED = ("train_loss", "val_loss", "top1_error", "top5_error", "lr", "images_per_s")
# top1/top5 are already logged per epoch; the model's size goes alongside the last one.
FINAL_LOGGED = ("params_m", "madds_m")
MANIFEST_FIX = "run `dvc repro imagenet_data` (or `isdarts imagenet-data`) first"


# ----------------------------------------------------------------------------- ImageNet data


def prepare_imagenet(params: Params, *, prepared_dir: Path = PREPARED_DIR) -> dict[str, Any]:
    """Check the configured ImageNet tree (or build the tiny CIFAR-made one) and write its manifest."""
    ip = params.darts.imagenet
    if ip.root is None and params.profile == "paper":
        raise ConfigError("params.yaml: profile 'paper' needs darts.imagenet.root (an ImageNet ImageFolder tree)")
    return prepare_imagenet_data(
        ip.root, prepared_dir=prepared_dir, tiny_dir=IMAGENET_TINY_DIR, manifest_path=IMAGENET_MANIFEST,
        train_per_class=ip.tiny_train_per_class, val_per_class=ip.tiny_val_per_class,
    )


def build_tiny_imagefolder(
    arrays: CifarArrays, tiny_dir: Path, *, train_per_class: int, val_per_class: int
) -> Path:
    """train/ from the first images of each class of the training split, val/ from the test split, as PNGs.

    Built beside `tiny_dir` and swapped in whole, so a failure leaves the old tree (or none), never half a tree.
    """
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
    manifest_path = Path(manifest_path)
    manifest_path.unlink(missing_ok=True)  # a stale manifest would point training at the previous tree
    arrays, _ = load_prepared(Path(prepared_dir))
    build_tiny_imagefolder(arrays, Path(tiny_dir), train_per_class=train_per_class, val_per_class=val_per_class)
    used = Path(root) if root is not None else Path(tiny_dir)
    manifest = {**check_imagefolder(used), "tiny": root is None, "root": str(used)}
    atomic_write_json(manifest_path, manifest)
    return manifest


def read_imagenet_manifest(manifest_path: Path) -> dict[str, Any]:
    """The manifest the imagenet_data step wrote; DataError (saying how to make it) when missing or malformed."""
    path = Path(manifest_path)
    if not path.is_file():
        raise DataError(f"ImageNet manifest {path} not found; {MANIFEST_FIX}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"ImageNet manifest {path} is not valid JSON ({exc}); {MANIFEST_FIX}") from exc
    missing = [k for k in ("root", "tiny", "counts") if not isinstance(data, Mapping) or k not in data]
    if missing:
        raise DataError(f"ImageNet manifest {path} lacks {missing}; {MANIFEST_FIX}")
    return data


# ----------------------------------------------------------------------------- ImageNet transfer


@dataclass(frozen=True)
class TransferRun:
    """One ImageNet transfer to run: the searched cell and the trainer's settings, the manifest naming the
    ImageFolder tree it trains on, its seed and device, where it writes and checkpoints, and the run's
    description copied into its metrics."""

    genotype_file: Path  # a search's genotype.json; its metrics.json beside it gives the search cost
    cfg: ImagenetConfig
    manifest_path: Path  # what the imagenet_data step wrote (the tree's root and per-class counts)
    seed: int
    device: str  # "auto", "cpu", "cuda", "cuda:N"; each rank takes its own GPU under torchrun
    out_dir: Path  # history.json, metrics.json (and model.pt2 unless model_path says elsewhere)
    checkpoint_dir: Path
    run_info: Mapping[str, Any]  # method, profile, paper settings (isdarts.pipeline.runinfo.check_run_info)
    model_path: Path | None = None  # default out_dir/model.pt2
    checkpoint_every_s: float | None = None  # also checkpoint inside long epochs this often


def transfer(
    params: Params,
    method: str,
    seed: int,
    *,
    genotype_file: Path | None = None,
    out_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    stage: str | None = None,
) -> dict[str, Any] | None:
    """Train a DARTS-space genotype on ImageNet (mobile setting); under torchrun, one process per GPU."""
    default_run = run_dir("darts", method, seed, step="imagenet")
    genotype_file = Path(genotype_file or run_dir("darts", method, seed) / "genotype.json")
    manifest = read_imagenet_manifest(IMAGENET_MANIFEST)
    ip = params.darts.imagenet
    mismatches = ip.mismatches() + (["imagenet: the tiny CIFAR-made ImageFolder"] if manifest["tiny"] else [])
    run = TransferRun(
        genotype_file, ip.train, manifest_path=IMAGENET_MANIFEST, seed=seed, device=params.device,
        out_dir=Path(out_dir or default_run), checkpoint_dir=Path(checkpoint_dir or checkpoint_dir_for(default_run)),
        run_info=run_info_for(params, method, sorted(set(mismatches)), genotype_file),
        model_path=model_path_for(default_run) if out_dir is None else None,
        checkpoint_every_s=params.checkpoint_every_s,
    )
    return transfer_run(run, manifest=manifest, stage=stage)


def transfer_run(
    run: TransferRun,
    *,
    manifest: Mapping[str, Any] | None = None,
    stage: str | None = None,
    tracking: bool = True,
) -> dict[str, Any] | None:
    """Train the genotype in `run.genotype_file` on the ImageFolder tree of the manifest, on one process or
    under torchrun (WORLD_SIZE > 1 joins the process group from the environment).

    `manifest` is the one at `run.manifest_path` when the caller has read it already. Rank 0 alone tracks in
    MLflow (unless `tracking` is off; `stage` tags the MLflow run), writes `run.model_path` (default
    out_dir/model.pt2: the trained network, logged as the run's MLflow model "model"), out_dir/history.json and
    out_dir/metrics.json and returns the metrics; other ranks return None. Inputs (genotype, manifest, tree,
    world size vs batch) are checked before training. Besides one per epoch, a checkpoint is written every
    `run.checkpoint_every_s` and at the step where a SIGTERM stops the run.
    """
    cfg, seed, device, run_info, manifest_path = run.cfg, run.seed, run.device, run.run_info, run.manifest_path
    genotype_file, out_dir, checkpoint_dir = Path(run.genotype_file), Path(run.out_dir), Path(run.checkpoint_dir)
    genotype = read_genotype(genotype_file)
    check_run_info(run_info)
    check_input_size(cfg)
    cost = search_cost(genotype_file)
    recorded = manifest if manifest is not None else read_imagenet_manifest(manifest_path)
    root = Path(recorded["root"])
    found = check_imagefolder(root)
    if found["counts"] != recorded["counts"]:
        raise DataError(
            f"the ImageFolder tree at {root} changed since {manifest_path} was written (class folders or image "
            f"counts differ); run the prepare_imagenet step again"
        )
    world = ddp.launch_world_size()
    try:
        ddp.per_rank_batch(cfg.batch_size, world)
    except ValueError as exc:
        raise ConfigError(f"imagenet batch_size {cfg.batch_size} with {world} processes: {exc}") from exc

    joined = False
    if world > 1 and not ddp.current_info().enabled:
        ddp.init_from_env(ddp.default_backend(resolve_device(device)))
        joined = True
    try:
        info = ddp.current_info()
        tags = {
            **standard_tags(seed=seed, space="darts", method=run_info["method"], stage=stage,
                            profile=run_info["profile"]),
            "genotype": str(genotype), "genotype_file": str(genotype_file), "world_size": str(info.world_size),
        }
        logged_params = {"imagenet": dataclasses.asdict(cfg), "seed": seed, "device": device,
                         "data_root": str(root), "tiny": recorded["tiny"], "run_info": dict(run_info)}
        # One MLflow run per training, however many processes train it: rank 0's.
        with tracked_run(IMAGENET_EXPERIMENT, tags, enabled=tracking and info.rank == 0) as tracked:
            on_start, on_epoch = tracked.epoch_hooks(
                run_name("imagenet", run_info, seed), logged_params, IMAGENET_LOGGED
            )
            result = train_imagenet(
                genotype, root, cfg, checkpoint_dir=checkpoint_dir, seed=seed, device=device, manifest=found,
                on_start=on_start, on_epoch=on_epoch, checkpoint_every_s=run.checkpoint_every_s,
            )
            if result is None:
                return None
            history = result.pop("history")
            result["data"]["tiny"] = bool(recorded["tiny"])
            metrics = merge_run_info(
                {**result, "space": "darts", "genotype": str(genotype), "genotype_file": str(genotype_file), **cost},
                run_info,
            )
            # Rebuilt as train_imagenet builds it, with the last epoch's weights from its checkpoint.
            network = NetworkImageNet(
                genotype, C=cfg.C, num_classes=len(found["classes"]), layers=cfg.layers,
                auxiliary=cfg.auxiliary_weight > 0,
            )
            model = export_inference(
                load_trained(network, checkpoint_dir / CHECKPOINT_NAME), Path(run.model_path or out_dir / MODEL_NAME),
                image_size=cfg.image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, classes=found["classes"],
                dataset="ImageNet (tiny, made from CIFAR-10)" if recorded["tiny"] else "ImageNet",
                genotype=str(genotype), params_m=metrics["params_m"], madds_m=metrics["madds_m"],
                madds_input=metrics["madds_input"],
            )
            write_outputs(out_dir, metrics, history)
            tracked.finish(out_dir / METRICS_NAME, {k: metrics[k] for k in FINAL_LOGGED}, step=metrics["epochs"],
                           model=model)
        return metrics
    finally:
        if joined:
            ddp.cleanup()
