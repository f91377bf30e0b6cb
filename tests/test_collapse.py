"""Collapse, measured: DARTS (1st order) and IS-DARTS of the committed quick-profile pipeline, seed 0.

The pipeline's own searches (runs/nb201/<method>/seed_0, which tests/test_committed_results.py ties to
dvc.lock and the current code) are the comparison BENCHMARKS.md records; re-running them here would only
repeat those stages. Nothing is asserted about which method wins: the test checks that the comparison is
made on equal terms (same seed, same shared settings, same data) and that what the pipeline reports for
the two cells is what the benchmark table says about them.
"""

from __future__ import annotations

import json
from pathlib import Path

from isdarts.benchmark.nb201 import default_table
from isdarts.config import load_params
from isdarts.spaces.nb201.genotype import Nb201Genotype

ROOT = Path(__file__).resolve().parents[1]
PARAM_FREE = {"skip_connect", "avg_pool_3x3", "none"}
SHARED = ("C", "N", "epochs", "batch_size", "lr", "lr_min", "momentum", "nesterov", "weight_decay", "grad_clip",
          "image_size", "train_images", "test_images")


def _run(method: str) -> tuple[Nb201Genotype, dict, dict]:
    run = ROOT / "runs" / "nb201" / method / "seed_0"
    genotype = Nb201Genotype.from_json(json.loads((run / "genotype.json").read_text()))
    metrics = json.loads((run / "metrics.json").read_text())
    lookup = json.loads((ROOT / "results" / f"nb201_{method}.json").read_text())
    return genotype, metrics, next(r for r in lookup["runs"] if r["seed"] == 0)


def test_darts_and_isdarts_from_the_same_seed_on_the_quick_profile(capsys):
    params = load_params(ROOT / "params.yaml")
    assert params.profile == "quick"
    table = default_table()
    rows = {}
    for method in ("darts1", "isdarts"):
        genotype, metrics, looked_up = _run(method)
        record = table.lookup(genotype)
        assert record.arch_str == metrics["arch_str"] == looked_up["arch_str"] == genotype.to_arch_str()
        assert record.index == looked_up["benchmark_index"]
        assert record.accuracies() == looked_up["accuracies"]
        assert (metrics["seed"], metrics["profile"], metrics["data_kind"]) == (0, "quick", "subset")
        assert looked_up["skip_count"] == genotype.skip_count() == sum(op == "skip_connect" for op in genotype.ops)
        param_free = sum(op in PARAM_FREE for op in genotype.ops)
        assert looked_up["param_free_count"] == genotype.param_free_count() == param_free
        rows[method] = (genotype, record)

    # Equal terms: the two searches differ only in the method.
    darts, isdarts = params.nb201.search("darts1"), params.nb201.search("isdarts")
    assert all(getattr(darts, k) == getattr(isdarts, k) for k in SHARED)

    with capsys.disabled():
        print("\ncollapse comparison (quick profile, seed 0):")
        for method, (genotype, record) in rows.items():
            acc = record.accuracies()
            print(f"  {method:8s} {record.arch_str}  skip={genotype.skip_count()} "
                  f"param-free={genotype.param_free_count()}  C10 test {acc['cifar10_test']:.2f}  "
                  f"C100 test {acc['cifar100_test']:.2f}  IN16 test {acc['imagenet16_test']:.2f}")
