"""The search_nb201, search_darts and sweep_search stages: one resumable search (or one shrink-rate sweep
point), tracked in MLflow, its genotype, metrics and history written only once it finished."""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any

from isdarts.config import Params
from isdarts.data.cifar import load_prepared
from isdarts.errors import ConfigError
from isdarts.io import atomic_write_json
from isdarts.pipeline.layout import PREPARED_DIR, checkpoint_dir_for, run_dir
from isdarts.pipeline.tracked import tracked_run
from isdarts.registry import SWEEP_METHOD, label, space_spec
from isdarts.search.loop import SearchRun, epoch_metrics, run_search
from isdarts.tracking import standard_tags
from isdarts.train.runtime import resolve_device


def search(
    params: Params,
    space: str,
    method: str,
    seed: int,
    *,
    rate: str | None = None,
    prepared_dir: Path = PREPARED_DIR,
    out_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    stage: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) one search of `method` on `space` for `seed`; returns its metrics."""
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
    default_run = run_dir(space, method, seed, rate=rate)
    out_dir = Path(out_dir or default_run)
    checkpoint_dir = Path(checkpoint_dir or checkpoint_dir_for(default_run))
    arrays, manifest = load_prepared(prepared_dir)
    tags = standard_tags(seed=seed, space=space, method=method, stage=stage or "cli", profile=params.profile)
    if rate is not None:
        tags["rate"] = rate
    logged_params = {
        "search": dataclasses.asdict(cfg), "seed": seed, "device": str(resolve_device(params.device)),
        "data": manifest["kind"],
    }
    with tracked_run(f"isdarts-{space}" if rate is None else "isdarts-darts-sweep", tags) as run:
        on_start, on_epoch = run.epoch_hooks(
            f"{space}-{method}-seed{seed}", logged_params, partial(epoch_metrics, space=space_spec(space).load())
        )
        spec = SearchRun(
            cfg, seed, profile=params.profile, device=params.device, data_kind=manifest["kind"],
            data_fingerprint=manifest["npz_sha256"], checkpoint_dir=checkpoint_dir,
            checkpoint_every_s=params.checkpoint_every_s, extra_metrics=extra,
        )
        result = run_search(spec, arrays, on_start=on_start, on_epoch=on_epoch, progress=progress)
        atomic_write_json(out_dir / "history.json", result["history"])
        atomic_write_json(out_dir / "metrics.json", result["metrics"])
        atomic_write_json(out_dir / "genotype.json", result["genotype"])
        run.finish(out_dir / "genotype.json", tags={"genotype": result["metrics"]["genotype"][:5000]})
    return result["metrics"]
