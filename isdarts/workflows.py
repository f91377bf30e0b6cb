"""One function per pipeline step; the DVC stage scripts and the `isdarts` CLI both call these."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from isdarts.config import ConfigError, Params
from isdarts.io import atomic_write_json

log = logging.getLogger(__name__)

PREPARED_DIR = Path("data/prepared")
NB201_RUNS_DIR = Path("runs/nb201")
CHECKPOINTS_DIR = Path("checkpoints/nb201")
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


def run_dir(method: str, seed: int) -> Path:
    return NB201_RUNS_DIR / method / f"seed_{seed}"


def search_nb201(
    params: Params,
    seed: int,
    *,
    prepared_dir: Path = PREPARED_DIR,
    out_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    stage: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """One NB201 search for one seed: resumable, tracked in MLflow, outputs written atomically."""
    from isdarts.data.cifar import load_prepared
    from isdarts.tracking import Tracker, standard_tags
    from isdarts.train.search_loop import run_nb201_search

    method = params.nb201_search.method
    out_dir = Path(out_dir or run_dir(method, seed))
    checkpoint_dir = Path(checkpoint_dir or CHECKPOINTS_DIR / method / f"seed_{seed}")
    arrays, manifest = load_prepared(prepared_dir)
    tracker = Tracker(experiment="isdarts-nb201")
    tags = standard_tags(seed=seed, space="nb201", method=method, stage=stage or "cli", profile=params.profile)
    try:
        result = run_nb201_search(
            params, seed, arrays, data_kind=manifest["kind"], data_fingerprint=manifest["npz_sha256"],
            checkpoint_dir=checkpoint_dir, tracker=tracker, tracker_tags=tags, progress=progress,
        )
    except BaseException as exc:
        tracker.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    atomic_write_json(out_dir / "history.json", result["history"])
    atomic_write_json(out_dir / "metrics.json", result["metrics"])
    atomic_write_json(out_dir / "genotype.json", result["genotype"])
    tracker.log_artifact(out_dir / "genotype.json")
    tracker.set_tags({"arch_str": result["metrics"]["arch_str"]})
    tracker.end("FINISHED")
    return result["metrics"]


def lookup_nb201(params: Params, method: str, out_path: Path | None = None) -> dict[str, Any]:
    """Look every seed's genotype up in the NB201 table and gather the per-method results file."""
    import json

    from isdarts.benchmark.nb201 import default_table
    from isdarts.report.table1 import METHOD_LABELS
    from isdarts.spaces.nb201_genotype import Nb201Genotype

    table = default_table()
    runs = []
    for seed in params.nb201_seeds:
        folder = run_dir(method, seed)
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
        "profile_note": profile_note(params, runs),
        "runs": runs,
        "summary": _summary(runs),
    }
    atomic_write_json(out_path or RESULTS_DIR / f"nb201_{method}.json", result)
    return result


def profile_note(params: Params, runs: list[dict[str, Any]]) -> str:
    """One line that says what produced these numbers, and how they differ from the paper's setting."""
    cfg = params.nb201_search
    desc = (
        f"{params.profile} profile: C={cfg.C}, N={cfg.N}, {cfg.epochs} epochs, batch {cfg.batch_size}, "
        f"shrink {cfg.shrink.steps} steps every {cfg.shrink.interval} epoch(s), IIM on {cfg.iim.source}"
    )
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


def build_report(results_dir: Path = RESULTS_DIR, reports_dir: Path = REPORTS_DIR) -> tuple[Path, ...]:
    """Rebuild the paper tables in reports/ from the results files (never from MLflow)."""
    from isdarts.report.table1 import build_table1, write_table1

    files = sorted(Path(results_dir).glob("nb201_*.json"))
    if not files:
        raise FileNotFoundError(f"no NB201 results in {results_dir}; run `dvc repro` (the lookup stage) first")
    return write_table1(build_table1(files), reports_dir)
