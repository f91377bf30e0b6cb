"""scripts/benchmark_search.py, the script that checks the speed targets: its paired timing and a tiny run
of this tree against a baseline tree extracted from git, in one invocation."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "benchmark_search.py"


def test_timed_together_alternates_the_functions_and_keeps_each_ones_median():
    timed_together = runpy.run_path(str(SCRIPT))["timed_together"]
    calls: list[str] = []

    def work(name: str, seconds: float):
        def fn(i: int) -> None:
            calls.append(f"{name}{i}")
            time.sleep(seconds)
        return fn

    slow, fast = timed_together([work("a", 0.02), work("b", 0.002)], steps=3, warmup=1, device=torch.device("cpu"))
    # Called in turn every step, so a ratio of the two sees the same machine load.
    assert calls == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3"]
    assert 0.02 <= slow < 0.2 and 0.002 <= fast < slow


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="the baseline tree comes from git")
def test_a_tiny_run_compares_this_tree_with_the_same_settings_in_the_baseline_tree():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--space", "nb201", "--C", "2", "--N", "1", "--batch", "4", "--steps", "1",
           "--iim-steps", "1", "--warmup", "0", "--rounds", "1", "--threads", "1", "--baseline", "HEAD",
           "--variants", "baseline,old:fused,fused,fused+amp"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[2:]}
    assert set(rows) == {"baseline", "old:fused", "fused", "fused+amp"}
    assert rows["baseline"][1] == "1.00x"  # the other rows are ratios to it
    for name, cells in rows.items():
        full, single, iim = float(cells[0]), float(cells[2]), cells[4]
        assert full > 0 and single > 0 and iim.endswith("x") and float(iim[:-1]) > 0, name


def test_an_unknown_variant_is_refused_naming_the_choices():
    cmd = [sys.executable, str(SCRIPT), "--worker", "fused+fast", "--C", "2", "--N", "1", "--batch", "2"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "unknown variant 'fused+fast': use baseline, unfused or fused, plus any of +cl, +amp, +ciim" in done.stderr


def test_the_concurrency_benchmark_starts_the_jobs_together_and_sums_their_throughput():
    """scripts/benchmark_concurrency.py: a row per JOBSxTHREADS setting, a rate per process and their sum; a
    malformed setting is refused before anything runs."""
    script = ROOT / "scripts" / "benchmark_concurrency.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(script), "--settings", "2x1", "--C", "2", "--batch", "4",
                          "--steps", "1"], env=env, check=True, capture_output=True, text=True).stdout
    rows = {"x".join(line.split()[0:3:2]): line.split()[3:] for line in out.splitlines()[2:]}
    assert list(rows) == ["2x1"]
    a, _, b, total = rows["2x1"]
    assert abs(int(a) + int(b) - int(total)) <= 1
    bad = subprocess.run([sys.executable, str(script), "--settings", "2by1"], capture_output=True, text=True)
    assert bad.returncode != 0 and "'2by1' is not JOBSxTHREADS" in bad.stderr
