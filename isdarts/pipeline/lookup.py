"""The lookup_nb201 stage: every seed's searched NB201 cell looked up in the benchmark table, gathered into
results/nb201_<method>.json with the mean and std over seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from isdarts.benchmark.nb201 import default_table
from isdarts.config import Params
from isdarts.io import atomic_write_json
from isdarts.pipeline.layout import RESULTS_DIR, run_dir
from isdarts.registry import label
from isdarts.report.render import summarize
from isdarts.spaces.nb201.genotype import Nb201Genotype


def lookup_nb201(params: Params, method: str, out_path: Path | None = None) -> dict[str, Any]:
    """Look every seed's genotype up in the NB201 table and write the per-method results file."""
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
    result = {
        "space": "nb201",
        "method": method,
        "method_label": label(method),
        "profile": params.profile,
        "paper_settings": all(r["paper_settings"] for r in runs),
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
    per_key = {k: summarize([r["accuracies"][k] for r in runs]) for k in runs[0]["accuracies"]}
    return {
        "n_runs": len(runs),
        "mean": {k: s.mean for k, s in per_key.items()},
        "std": {k: s.std for k, s in per_key.items()},
        "search_hours_mean": summarize([r["search_hours"] for r in runs]).mean,
    }
