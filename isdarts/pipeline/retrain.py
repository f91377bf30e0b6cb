"""The retrain_darts and sweep_retrain stages: a searched DARTS-space cell trained on CIFAR-10 from scratch (or on
CIFAR-100 or SVHN: the cell searched on that dataset by default, its runs under runs/darts-<dataset>/).

Every input is checked before any training; the run resumes from its per-epoch checkpoint (continuing the
same MLflow run) and writes metrics.json and history.json only once it finished.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isdarts.config import Params, RetrainConfig
from isdarts.data.cifar import CifarArrays, load_prepared
from isdarts.data.datasets import DEFAULT_DATASET, dataset_info
from isdarts.data.downsample import reduce_cifar
from isdarts.errors import ConfigError
from isdarts.pipeline import layout
from isdarts.pipeline.layout import checkpoint_dir_for, model_path_for, run_dir
from isdarts.pipeline.runinfo import (
    check_run_info,
    merge_run_info,
    read_genotype,
    run_info_for,
    run_name,
    search_cost,
)
from isdarts.pipeline.tracked import tracked_run
from isdarts.spaces.darts.network import count_flops_m
from isdarts.tracking import standard_tags
from isdarts.train.epochs import METRICS_NAME, write_outputs
from isdarts.train.export import MODEL_NAME, export_inference, load_trained
from isdarts.train.retrain import CHECKPOINT_NAME, build_network, retrain_cifar

RETRAIN_EXPERIMENT = "isdarts-darts-retrain"
RETRAIN_LOGGED = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "drop_path", "images_per_s")
FINAL_LOGGED = ("final_test_acc", "final_test_error", "best_test_acc", "params_m")


@dataclass(frozen=True)
class RetrainRun:
    """One retraining to run: the searched cell and the trainer's settings, the images it sees (whichever dataset
    the arrays passed with it hold), its seed and device, where it writes and checkpoints, and the run's
    description copied into its metrics."""

    genotype_file: Path  # a search's genotype.json; its metrics.json beside it gives the search cost
    cfg: RetrainConfig
    image_size: int  # the images are downsampled to this side (32: as stored)
    train_images: int | None  # None: every training image
    test_images: int | None  # None: every test image
    seed: int
    device: str  # "auto", "cpu", "cuda", "cuda:N"
    out_dir: Path  # history.json, metrics.json (and model.pt2 unless model_path says elsewhere)
    checkpoint_dir: Path
    run_info: Mapping[str, Any]  # method, profile, paper settings (isdarts.pipeline.runinfo.check_run_info)
    model_path: Path | None = None  # default out_dir/model.pt2
    space: str = "darts"  # the space the cell was searched in (a robust space's retrains say which)
    checkpoint_every_s: float | None = None  # also checkpoint inside long epochs this often


def retrain(
    params: Params,
    method: str,
    seed: int,
    dataset: str = DEFAULT_DATASET,
    *,
    space: str = "darts",
    genotype_file: Path | None = None,
    rate: str | None = None,
    prepared_dir: Path | None = None,
    out_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    stage: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Retrain a DARTS-space genotype on `dataset` (default CIFAR-10) from scratch (default: this method's cell
    searched on that dataset in `space` (the DARTS space or a robust one), or the cell of sweep point `rate`),
    reading layout.prepared_dir(dataset)."""
    dataset = dataset_info(dataset).name
    if rate is not None and space != "darts":
        raise ConfigError(f"the shrink-rate sweep runs on the DARTS space only, not {space}")
    default_run = run_dir(space, method, seed, rate=rate, step="retrain", dataset=dataset)
    genotype_file = Path(genotype_file or run_dir(space, method, seed, rate=rate, dataset=dataset) / "genotype.json")
    rp = params.retrain_params(space)
    extra: dict[str, Any] = {}
    if rate is not None:
        schedule = params.darts.sweep.schedules[rate]
        extra = {"rate": schedule.rate, "rate_label": schedule.label, "rate_name": rate,
                 "steps": schedule.shrink.steps, "interval": schedule.shrink.interval,
                 "anchor": schedule.shrink.anchor}
    arrays, manifest = load_prepared(prepared_dir or layout.prepared_dir(dataset), dataset)
    mismatches = rp.mismatches() + ([] if manifest["kind"] == "full" else [f"data: {arrays.info.label} subset"])
    run = RetrainRun(
        genotype_file, rp.train, image_size=rp.image_size, train_images=rp.train_images,
        test_images=rp.test_images, seed=seed, device=params.device, out_dir=Path(out_dir or default_run),
        checkpoint_dir=Path(checkpoint_dir or checkpoint_dir_for(default_run)),
        run_info=run_info_for(params, method, mismatches, genotype_file, **extra),
        model_path=model_path_for(default_run) if out_dir is None else None,
        checkpoint_every_s=params.checkpoint_every_s, space=space,
    )
    return retrain_run(run, arrays, stage=stage, progress=progress)


def retrain_run(
    run: RetrainRun,
    arrays: CifarArrays,
    *,
    stage: str | None = None,
    progress: bool = False,
    stop_after_epochs: int | None = None,
    tracking: bool = True,
) -> dict[str, Any]:
    """Retrain the genotype in `run.genotype_file` on `arrays` (normalised with their dataset's own statistics),
    resumably, tracked in MLflow (unless `tracking` is off; `stage` tags the MLflow run).

    Writes `run.model_path` (default out_dir/model.pt2: the trained network, see isdarts.train.export),
    out_dir/history.json and out_dir/metrics.json once the last epoch is done, logs the network as the run's
    MLflow model "model", and returns the metrics (naming the dataset unless it is CIFAR-10); when
    `stop_after_epochs` cuts the run short it returns {"finished": False, ...} and writes nothing.
    """
    cfg, seed, device, run_info, image_size = run.cfg, run.seed, run.device, run.run_info, run.image_size
    genotype_file, out_dir, checkpoint_dir = Path(run.genotype_file), Path(run.out_dir), Path(run.checkpoint_dir)
    genotype = read_genotype(genotype_file)
    check_run_info(run_info)
    cost = search_cost(genotype_file)
    data = reduce_cifar(arrays, image_size=image_size, train_images=run.train_images, test_images=run.test_images)
    tags = {
        **standard_tags(seed=seed, space=run.space, method=run_info["method"], stage=stage,
                        profile=run_info["profile"]),
        "genotype": str(genotype), "genotype_file": str(genotype_file), "dataset": data.dataset,
    }
    # CIFAR-10 keeps its run name and parameters (so its MLflow runs are found again); another dataset is in both.
    own_dataset = {} if data.dataset == DEFAULT_DATASET else {"dataset": data.dataset}
    kind = "retrain" if not own_dataset else f"retrain-{data.dataset}"
    logged_params = {
        "retrain": dataclasses.asdict(cfg), "seed": seed, "device": device, "image_size": image_size,
        "train_images": len(data.train_y), "test_images": len(data.test_y), "run_info": dict(run_info), **own_dataset,
    }
    with tracked_run(RETRAIN_EXPERIMENT, tags, enabled=tracking) as tracked:
        on_start, on_epoch = tracked.epoch_hooks(run_name(kind, run_info, seed), logged_params, RETRAIN_LOGGED)
        result = retrain_cifar(
            genotype, data, cfg, device=device, seed=seed, checkpoint_dir=checkpoint_dir, progress=progress,
            stop_after_epochs=stop_after_epochs, on_start=on_start, on_epoch=on_epoch,
            checkpoint_every_s=run.checkpoint_every_s,
        )
        if not result["finished"]:
            tracked.stopped()  # as a kill would leave it; the next call reopens the same run
            return result
        metrics = merge_run_info(
            {
                **result["metrics"], "space": run.space, "genotype": str(genotype), "genotype_file": str(genotype_file),
                **cost, "image_size": image_size, "train_images": len(data.train_y), "test_images": len(data.test_y),
                **own_dataset,
            },
            run_info,
        )
        # The checkpoint holds the last epoch's weights; the trainer's own modules stay as they are, so a change
        # here keeps every checkpoint resumable (their code fingerprint).
        network = load_trained(build_network(genotype, cfg, len(data.classes)), checkpoint_dir / CHECKPOINT_NAME)
        size = data.train_x.shape[-1]
        model = export_inference(
            network, Path(run.model_path or out_dir / MODEL_NAME), image_size=size, mean=data.mean, std=data.std,
            classes=data.classes,
            dataset=data.info.label, genotype=str(genotype), params_m=metrics["params_m"],
            madds_m=count_flops_m(network, size),
        )
        write_outputs(out_dir, metrics, result["history"])
        final = {**{k: metrics[k] for k in FINAL_LOGGED}, "madds_m": model.card["madds_m"]}
        tracked.finish(out_dir / METRICS_NAME, final, step=metrics["epochs"], model=model)
    return metrics
