"""The lookup_nb201 stage: every seed's searched NB201 cell looked up in the benchmark table, gathered into
results/nb201_<method>.json with the mean and std over seeds.

NB201 trained every cell on CIFAR-10, CIFAR-100 and ImageNet16-120. A search on CIFAR-100 is judged by the
CIFAR-100 columns (the paper's Appendix C row: IS-DARTS searched on CIFAR-100, 70.71 valid / 71.11 test), so its
results name those columns as its own; SVHN has no column, and asking for one says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from isdarts.benchmark.nb201 import Nb201Table, default_table
from isdarts.config import Params
from isdarts.data.datasets import DEFAULT_DATASET, dataset_info
from isdarts.errors import BenchmarkError
from isdarts.io import atomic_write_json
from isdarts.pipeline.layout import nb201_results_path, run_dir
from isdarts.registry import label
from isdarts.report.render import summarize
from isdarts.spaces.nb201.genotype import Nb201Genotype

# The (valid, test) columns of the NB201 table that judge a search on each dataset it has columns for.
NB201_COLUMNS = {
    "cifar10": ("cifar10_valid", "cifar10_test"),
    "cifar100": ("cifar100_valid", "cifar100_test"),
}


def nb201_columns(dataset: str) -> tuple[str, str]:
    """The (valid, test) accuracy keys of `dataset` in the NB201 table; BenchmarkError where it has none."""
    info = dataset_info(dataset)
    if info.name not in NB201_COLUMNS:
        raise BenchmarkError(
            f"NAS-Bench-201 has no {info.label} columns (it trained its cells on CIFAR-10, CIFAR-100 and "
            f"ImageNet16-120 only), so a cell searched on {info.label} has no benchmark accuracy of its own "
            f"dataset; retrain it instead, or search on cifar10 or cifar100 to compare with the benchmark"
        )
    return NB201_COLUMNS[info.name]


def own_benchmark(arch: str | Nb201Genotype, dataset: str, table: Nb201Table | None = None) -> dict[str, Any]:
    """The cell's benchmark accuracies on its own search dataset: which columns, and their values."""
    valid_key, test_key = nb201_columns(dataset)
    accuracies = (table or default_table()).lookup(arch).accuracies()
    return {
        "dataset": dataset_info(dataset).name, "valid_column": valid_key, "test_column": test_key,
        "valid_acc": accuracies[valid_key], "test_acc": accuracies[test_key],
    }


def lookup_nb201(
    params: Params, method: str, out_path: Path | None = None, *, dataset: str = DEFAULT_DATASET
) -> dict[str, Any]:
    """Look every seed's genotype (searched on `dataset`) up in the NB201 table and write the per-method results
    file (layout.nb201_results_path). Results of another dataset than CIFAR-10 also name it and its own columns;
    a dataset the benchmark has no columns for is a BenchmarkError before anything is read."""
    dataset = dataset_info(dataset).name
    own = nb201_columns(dataset) if dataset != DEFAULT_DATASET else None
    table = default_table()
    runs = []
    for seed in params.nb201.seeds:
        folder = run_dir("nb201", method, seed, dataset=dataset)
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
        if own is not None:
            runs[-1]["own"] = own_benchmark(record.arch_str, dataset, table)
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
    if own is not None:
        result["dataset"] = dataset
        result["own_columns"] = {"valid": own[0], "test": own[1]}
    atomic_write_json(out_path or nb201_results_path(method, dataset), result)
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
