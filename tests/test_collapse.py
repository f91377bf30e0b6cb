"""Collapse, measured: DARTS (1st order) and IS-DARTS on the quick profile from the same seed.

Runs both searches with the quick profile's NB201 settings (params.yaml as committed) on the real
CIFAR-10 subset, looks both cells up in NAS-Bench-201 and prints the comparison that BENCHMARKS.md
records. Nothing is asserted about which method wins: the test checks that the comparison is made
on equal terms (same seed, same shared settings, same data) and that what it reports is what the
benchmark table says about the two cells.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from isdarts.benchmark.nb201 import default_table
from isdarts.config import load_params
from isdarts.data.cifar import load_cifar10, locate_cifar10
from isdarts.search.loop import run_search
from isdarts.spaces.nb201.genotype import Nb201Genotype

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT.parent / "shared/data/cifar10-subset"
PARAM_FREE = {"skip_connect", "avg_pool_3x3", "none"}
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SUBSET / "cifar-10-batches-py").is_dir(),
                       reason=f"the real CIFAR-10 subset is not at {SUBSET} (CI has it; a user's clone may not)"),
]


def test_darts_and_isdarts_from_the_same_seed_on_the_quick_profile(tmp_path, capsys):
    params = load_params(ROOT / "params.yaml")
    assert params.profile == "quick"
    arrays = load_cifar10(locate_cifar10(None, download=False, subset_fallback=SUBSET))
    table = default_table()
    found = {}
    for method in ("darts1", "isdarts"):
        cfg = params.nb201.search(method)
        result = run_search(
            cfg, 0, arrays, profile=params.profile, device="cpu", data_kind="subset", data_fingerprint="subset",
            checkpoint_dir=tmp_path / method, progress=False,
        )
        genotype = Nb201Genotype.from_json(result["genotype"])
        record = table.lookup(genotype)
        found[method] = (genotype, record, cfg)
        assert record.arch_str == result["metrics"]["arch_str"] == genotype.to_arch_str()
        assert genotype.skip_count() == sum(op == "skip_connect" for op in genotype.ops)
        assert genotype.param_free_count() == sum(op in PARAM_FREE for op in genotype.ops)

    # Equal terms: the two runs differ only in the method.
    shared = ("C", "N", "epochs", "batch_size", "lr", "lr_min", "momentum", "nesterov", "weight_decay", "grad_clip")
    assert all(getattr(found["darts1"][2], k) == getattr(found["isdarts"][2], k) for k in shared)

    with capsys.disabled():
        print("\ncollapse comparison (quick profile, seed 0):")
        for method, (genotype, record, _) in found.items():
            acc = record.accuracies()
            print(f"  {method:8s} {record.arch_str}  skip={genotype.skip_count()} "
                  f"param-free={genotype.param_free_count()}  C10 test {acc['cifar10_test']:.2f}  "
                  f"C100 test {acc['cifar100_test']:.2f}  IN16 test {acc['imagenet16_test']:.2f}")
