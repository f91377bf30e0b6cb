"""The search_nb201, search_darts and sweep_search stages: one resumable search (or one shrink-rate sweep
point), tracked in MLflow, its genotype, metrics and history written only once it finished.

A search runs on CIFAR-10 unless told another dataset: it then reads that dataset's prepared folder, writes
under runs/<space>-<dataset>/, records the dataset in its results and MLflow tags, and (NB201) looks its cell
up in the benchmark's columns of that dataset. CIFAR-10 searches write exactly what they always wrote.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from pathlib import Path
from typing import Any

from isdarts.config import Params
from isdarts.data.cifar import load_prepared
from isdarts.data.datasets import DEFAULT_DATASET, dataset_info
from isdarts.errors import BenchmarkError, ConfigError
from isdarts.io import atomic_write_json
from isdarts.pipeline import layout
from isdarts.pipeline.layout import checkpoint_dir_for, run_dir
from isdarts.pipeline.lookup import own_benchmark
from isdarts.pipeline.tracked import tracked_run
from isdarts.registry import SWEEP_METHOD, label, space_spec
from isdarts.search.loop import SearchRun, epoch_metrics, run_search
from isdarts.tracking import standard_tags
from isdarts.train.runtime import resolve_device

log = logging.getLogger(__name__)


def search(
    params: Params,
    space: str,
    method: str,
    seed: int,
    dataset: str = DEFAULT_DATASET,
    *,
    rate: str | None = None,
    prepared_dir: Path | None = None,
    out_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    stage: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) one search of `method` on `space` for `seed` on `dataset`'s prepared images (default
    folder: layout.prepared_dir(dataset)); returns its metrics."""
    dataset = dataset_info(dataset).name
    cfg = params.space(space).search(method)
    extra: dict[str, Any] = {}
    if rate is not None:
        if space != "darts" or method != SWEEP_METHOD:
            raise ConfigError(f"the shrink-rate sweep runs {label(SWEEP_METHOD)} on the DARTS space only")
        sweep = params.darts.sweep
        if rate not in sweep.schedules:
            raise ConfigError(f"unknown sweep rate {rate!r}; darts.sweep.schedules has {', '.join(sweep.schedules)}")
        cfg = sweep.search(cfg, rate)
        schedule = sweep.schedules[rate]
        extra = {"rate": schedule.rate, "rate_label": schedule.label, "rate_name": rate}
    default_run = run_dir(space, method, seed, rate=rate, dataset=dataset)
    out_dir = Path(out_dir or default_run)
    checkpoint_dir = Path(checkpoint_dir or checkpoint_dir_for(default_run))
    arrays, manifest = load_prepared(prepared_dir or layout.prepared_dir(dataset), dataset)
    tags = standard_tags(seed=seed, space=space, method=method, stage=stage or "cli", profile=params.profile)
    tags["dataset"] = dataset
    if rate is not None:
        tags["rate"] = rate
    logged_params = {
        "search": dataclasses.asdict(cfg), "seed": seed, "device": str(resolve_device(params.device)),
        "data": manifest["kind"],
    }
    run_name = f"{space}-{method}-seed{seed}"
    if dataset != DEFAULT_DATASET:  # CIFAR-10 keeps its run name and parameters, so its MLflow runs are found again
        logged_params["dataset"] = dataset
        run_name = f"{space}-{dataset}-{method}-seed{seed}"
    space_obj = space_spec(space).load()
    with tracked_run(f"isdarts-{space}" if rate is None else "isdarts-darts-sweep", tags) as run:
        on_start, on_epoch = run.epoch_hooks(run_name, logged_params, partial(epoch_metrics, space=space_obj))
        spec = SearchRun(
            cfg, seed, profile=params.profile, device=params.device, data_kind=manifest["kind"],
            data_fingerprint=manifest["npz_sha256"], checkpoint_dir=checkpoint_dir,
            checkpoint_every_s=params.checkpoint_every_s, extra_metrics=extra,
        )
        result = run_search(spec, arrays, on_start=on_start, on_epoch=on_epoch, progress=progress)
        if dataset != DEFAULT_DATASET:
            _record_dataset(result, dataset, space_obj.benchmark is not None)
        atomic_write_json(out_dir / "history.json", result["history"])
        atomic_write_json(out_dir / "metrics.json", result["metrics"])
        atomic_write_json(out_dir / "genotype.json", result["genotype"])
        run.finish(out_dir / "genotype.json", tags={"genotype": result["metrics"]["genotype"][:5000]})
    return result["metrics"]


def _record_dataset(result: dict[str, Any], dataset: str, has_benchmark: bool) -> None:
    """Name the dataset in a finished search's metrics and genotype; on a space with a benchmark (NB201), add the
    found cell's accuracies in the benchmark's columns of this dataset, or say why there are none."""
    metrics = result["metrics"]
    metrics["dataset"] = result["genotype"]["dataset"] = dataset
    if not has_benchmark:
        return
    try:
        metrics["benchmark"] = own_benchmark(metrics["arch_str"], dataset)
    except BenchmarkError as exc:  # SVHN: NB201 has no columns for it; the search itself is still a result
        log.warning("%s", exc)
        metrics["benchmark"] = {"dataset": dataset, "note": str(exc)}
