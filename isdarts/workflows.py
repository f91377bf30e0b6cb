"""One function per pipeline step; the DVC stage scripts and the `isdarts` CLI both call these."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from isdarts.config import ConfigError, Params
from isdarts.io import atomic_write_json

log = logging.getLogger(__name__)

PREPARED_DIR = Path("data/prepared")
IMAGENET_TINY_DIR = Path("data/imagenet-tiny")
IMAGENET_MANIFEST = Path("data/imagenet_manifest.json")
RUNS_DIR = Path("runs")
NB201_RUNS_DIR = RUNS_DIR / "nb201"
CHECKPOINTS_DIR = Path("checkpoints")
RESULTS_DIR = Path("results")
REPORTS_DIR = Path("reports")


def prepare_data(params: Params, out_dir: Path = PREPARED_DIR) -> dict[str, Any]:
    """Locate (or download) CIFAR-10, verify it, and store it as one uint8 array file with a manifest."""
    from isdarts.data.cifar import load_cifar10, locate_cifar10, save_prepared

    source = locate_cifar10(
        params.data.cifar10_root, download=params.data.download, subset_fallback=params.data.subset_fallback
    )
    if source.kind != "full":
        log.warning("%s", source.note)
    if params.profile == "paper" and not (source.kind == "full" and source.verified):
        raise ConfigError(f"params.yaml: profile 'paper' needs the full, verified CIFAR-10, but found: {source.note}")
    arrays = load_cifar10(source)
    return save_prepared(arrays, source.as_dict(), out_dir)


def run_dir(space: str, method: str, seed: int, *, rate: str | None = None, step: str = "search") -> Path:
    """Where one run's outputs go: runs/nb201/<method>/seed_N, runs/darts/<step>/<method>/seed_N, or
    runs/darts/sweep/<rate>/<step> for the shrink-rate sweep."""
    if rate is not None:
        return RUNS_DIR / "darts" / "sweep" / rate / step
    if space == "nb201":
        return NB201_RUNS_DIR / method / f"seed_{seed}"
    return RUNS_DIR / "darts" / step / method / f"seed_{seed}"


def checkpoint_dir_for(run: Path) -> Path:
    """Checkpoints mirror the run folder under checkpoints/ (kept by DVC between runs: `persist`)."""
    return CHECKPOINTS_DIR / run.relative_to(RUNS_DIR)


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
    """One search (or one shrink-rate sweep point): resumable, tracked in MLflow, outputs written atomically."""
    from isdarts.data.cifar import load_prepared
    from isdarts.tracking import Tracker, standard_tags
    from isdarts.train.search_loop import run_search

    runs = params.space(space)
    cfg = runs.search(method)
    extra: dict[str, Any] = {}
    if rate is not None:
        if space != "darts" or method != "isdarts":
            raise ConfigError("the shrink-rate sweep runs IS-DARTS on the DARTS space only")
        sweep = params.darts.sweep
        if rate not in sweep.schedules:
            raise ConfigError(f"unknown sweep rate {rate!r}; darts.sweep.schedules has {', '.join(sweep.schedules)}")
        cfg = sweep.search(cfg, rate)
        schedule = sweep.schedules[rate]
        extra = {"rate": schedule.rate, "rate_label": schedule.label, "rate_name": rate}
    out_dir = Path(out_dir or run_dir(space, method, seed, rate=rate))
    checkpoint_dir = Path(checkpoint_dir or checkpoint_dir_for(run_dir(space, method, seed, rate=rate)))
    arrays, manifest = load_prepared(prepared_dir)
    tracker = Tracker(experiment=f"isdarts-{space}" if rate is None else "isdarts-darts-sweep")
    tags = standard_tags(seed=seed, space=space, method=method, stage=stage or "cli", profile=params.profile)
    if rate is not None:
        tags["rate"] = rate
    try:
        result = run_search(
            cfg, seed, arrays, profile=params.profile, device=params.device, data_kind=manifest["kind"],
            data_fingerprint=manifest["npz_sha256"], checkpoint_dir=checkpoint_dir, tracker=tracker,
            tracker_tags=tags, progress=progress, extra_metrics=extra,
        )
    except BaseException as exc:
        tracker.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    atomic_write_json(out_dir / "history.json", result["history"])
    atomic_write_json(out_dir / "metrics.json", result["metrics"])
    atomic_write_json(out_dir / "genotype.json", result["genotype"])
    tracker.log_artifact(out_dir / "genotype.json")
    tracker.set_tags({"genotype": result["metrics"]["genotype"][:5000]})
    tracker.end("FINISHED")
    return result["metrics"]


def search_nb201(params: Params, seed: int, *, method: str = "isdarts", **kwargs: Any) -> dict[str, Any]:
    return search(params, "nb201", method, seed, **kwargs)


def _run_info(params: Params, method: str, mismatches: list[str], genotype_file: Path, **extra: Any) -> dict:
    """What a retrain/transfer result records about where its numbers come from."""
    search_metrics = Path(genotype_file).with_name("metrics.json")
    search_mismatches: list[str] = []
    if search_metrics.is_file():
        import json

        search_mismatches = json.loads(search_metrics.read_text()).get("paper_mismatches", [])
    all_mismatches = [f"search: {m}" for m in search_mismatches] + mismatches
    return {"method": method, "profile": params.profile, "paper_settings": not all_mismatches,
            "paper_mismatches": all_mismatches, **extra}


def retrain(
    params: Params,
    method: str,
    seed: int,
    *,
    genotype_file: Path | None = None,
    rate: str | None = None,
    prepared_dir: Path = PREPARED_DIR,
    out_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    stage: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Retrain a DARTS-space genotype on CIFAR-10 from scratch (default: this method's searched cell)."""
    from isdarts.darts_workflows import retrain_run
    from isdarts.data.cifar import load_prepared

    search_dir = run_dir("darts", method, seed, rate=rate)
    genotype_file = Path(genotype_file or search_dir / "genotype.json")
    out_dir = Path(out_dir or run_dir("darts", method, seed, rate=rate, step="retrain"))
    default_run = run_dir("darts", method, seed, rate=rate, step="retrain")
    checkpoint_dir = Path(checkpoint_dir or checkpoint_dir_for(default_run))
    rp = params.darts.retrain
    extra: dict[str, Any] = {}
    if rate is not None:
        schedule = params.darts.sweep.schedules[rate]
        extra = {"rate": schedule.rate, "rate_label": schedule.label, "rate_name": rate,
                 "steps": schedule.shrink.steps, "interval": schedule.shrink.interval,
                 "anchor": schedule.shrink.anchor}
    arrays, manifest = load_prepared(prepared_dir)
    mismatches = rp.mismatches() + ([] if manifest["kind"] == "full" else ["data: CIFAR-10 subset"])
    info = _run_info(params, method, mismatches, genotype_file, **extra)
    return retrain_run(
        genotype_file, rp.train, arrays, image_size=rp.image_size, train_images=rp.train_images,
        test_images=rp.test_images, seed=seed, device=params.device, out_dir=out_dir, checkpoint_dir=checkpoint_dir,
        run_info=info, stage=stage, progress=progress,
    )


def prepare_imagenet(params: Params, *, prepared_dir: Path = PREPARED_DIR) -> dict[str, Any]:
    """Check the configured ImageNet tree (or build the tiny CIFAR-made one) and write its manifest."""
    from isdarts.darts_workflows import prepare_imagenet_data

    ip = params.darts.imagenet
    if ip.root is None and params.profile == "paper":
        raise ConfigError("params.yaml: profile 'paper' needs darts.imagenet.root (an ImageNet ImageFolder tree)")
    return prepare_imagenet_data(
        ip.root, prepared_dir=prepared_dir, tiny_dir=IMAGENET_TINY_DIR, manifest_path=IMAGENET_MANIFEST,
        train_per_class=ip.tiny_train_per_class, val_per_class=ip.tiny_val_per_class,
    )


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
    import json

    from isdarts.darts_workflows import transfer_run

    genotype_file = Path(genotype_file or run_dir("darts", method, seed) / "genotype.json")
    out_dir = Path(out_dir or run_dir("darts", method, seed, step="imagenet"))
    checkpoint_dir = Path(checkpoint_dir or checkpoint_dir_for(run_dir("darts", method, seed, step="imagenet")))
    if not IMAGENET_MANIFEST.is_file():
        raise FileNotFoundError(
            f"{IMAGENET_MANIFEST} not found; run `dvc repro imagenet_data` (or `isdarts imagenet-data`) first"
        )
    manifest = json.loads(IMAGENET_MANIFEST.read_text())
    ip = params.darts.imagenet
    mismatches = ip.mismatches() + (["imagenet: the tiny CIFAR-made ImageFolder"] if manifest.get("tiny") else [])
    info = _run_info(params, method, sorted(set(mismatches)), genotype_file)
    return transfer_run(
        genotype_file, ip.train, manifest_path=IMAGENET_MANIFEST, seed=seed, device=params.device,
        out_dir=out_dir, checkpoint_dir=checkpoint_dir, run_info=info, stage=stage,
    )


def lookup_nb201(params: Params, method: str, out_path: Path | None = None) -> dict[str, Any]:
    """Look every seed's genotype up in the NB201 table and gather the per-method results file."""
    import json

    from isdarts.benchmark.nb201 import default_table
    from isdarts.config import METHOD_LABELS
    from isdarts.spaces.nb201_genotype import Nb201Genotype

    table = default_table()
    runs = []
    for seed in params.nb201.seeds:
        folder = run_dir("nb201", method, seed)
        metrics = json.loads((folder / "metrics.json").read_text())
        genotype = Nb201Genotype.from_json(json.loads((folder / "genotype.json").read_text()))
        record = table.lookup(genotype)
        runs.append({
            "seed": seed,
            "arch_str": record.arch_str,
            "benchmark_index": record.index,
            "accuracies": record.accuracies(),
            "search_hours": metrics["search_hours"],
            "cost_unit": metrics["cost_unit"],
            "device_name": metrics["device_name"],
            "skip_count": genotype.skip_count(),
            "param_free_count": genotype.param_free_count(),
            "final_test_acc_supernet": metrics["final_test_acc"],
            "paper_settings": metrics["paper_settings"],
            "paper_mismatches": metrics["paper_mismatches"],
        })
    paper_settings = all(r["paper_settings"] for r in runs)
    result = {
        "space": "nb201",
        "method": method,
        "method_label": METHOD_LABELS[method],
        "profile": params.profile,
        "paper_settings": paper_settings,
        "profile_note": profile_note(params, method, runs),
        "runs": runs,
        "summary": _summary(runs),
    }
    atomic_write_json(out_path or RESULTS_DIR / f"nb201_{method}.json", result)
    return result


def profile_note(params: Params, method: str, runs: list[dict[str, Any]]) -> str:
    """One line that says what produced these numbers, and how they differ from the paper's setting."""
    cfg = params.nb201.search(method)
    desc = f"{params.profile} profile: C={cfg.C}, N={cfg.N}, {cfg.epochs} epochs, batch {cfg.batch_size}"
    if cfg.shrink is not None:
        desc += f", shrink {cfg.shrink.steps} steps every {cfg.shrink.interval} epoch(s)"
    if cfg.iim is not None:
        desc += f", IIM on {cfg.iim.source}"
    if cfg.bilevel:
        desc += f", {cfg.train_portion:g} of the training set trains the weights, the rest α"
    differences = sorted({m for r in runs for m in r["paper_mismatches"]})
    if differences:
        return desc + "; differs from the paper in: " + ", ".join(differences)
    return desc + "; the paper's setting"


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std over seeds (std null for one seed), as DVC metrics."""
    from isdarts.report.tables import summarize

    per_key = {k: summarize([r["accuracies"][k] for r in runs]) for k in runs[0]["accuracies"]}
    return {
        "n_runs": len(runs),
        "mean": {k: s.mean for k, s in per_key.items()},
        "std": {k: s.std for k, s in per_key.items()},
        "search_hours_mean": summarize([r["search_hours"] for r in runs]).mean,
    }


def build_report(
    results_dir: Path = RESULTS_DIR, runs_dir: Path = RUNS_DIR, reports_dir: Path = REPORTS_DIR
) -> tuple[Path, ...]:
    """Rebuild the paper tables and figures in reports/ from stage outputs (never from MLflow)."""
    from isdarts.report.build import build_all

    return build_all(results_dir, runs_dir, reports_dir)
