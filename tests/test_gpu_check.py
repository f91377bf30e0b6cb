"""scripts/gpu_check.py in its CPU tiny mode, as the GPU machine runs it: without mlflow or dvc, writing its
JSON and markdown results, and still writing them when its time budget is spent."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The GPU machine has neither package: make importing them fail, as it would there, before the script runs.
BLOCKED_RUN = (
    "import runpy, sys\n"
    "for name in ('mlflow', 'dvc'):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = ['scripts/gpu_check.py', *sys.argv[1:]]\n"
    "runpy.run_path('scripts/gpu_check.py', run_name='__main__')\n"
    "assert not any(m.split('.')[0] in ('mlflow', 'dvc') and sys.modules[m] for m in sys.modules)\n"
)


def run_check(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", BLOCKED_RUN, "--data", str(data), "--out", str(out), "--cpu-tiny", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_cpu_tiny_mode_runs_every_check_without_mlflow_or_dvc(shared_cifar_subset, tmp_path):
    done = run_check(shared_cifar_subset, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    sections = results["sections"]
    assert results["mode"] == "cpu-tiny" and "tiled to 256" in results["data_note"]
    for space in ("nb201", "darts"):
        correctness = sections[f"correctness {space}"]
        assert correctness["passed"] and [r["mask"] for r in correctness["masks"]] == [
            "all alive", "one shrink step", "final"]
        levers = sections[f"levers {space}"]
        for lever in ("eager", "channels_last", "bf16"):
            assert levers[lever]["images_per_s"] > 0
        assert levers["iim_pass"]["ratio"] > 0 and levers["iim_pass"]["compiled_ratio"] > 0
        assert not levers["iim_pass"]["compiled_fell_back"] and levers["iim_pass"]["compiled_rel_diff"] < 1e-4
    assert sections["levers nb201"]["combined"]["compile_backend"] == "aot_eager"
    assert sections["levers nb201, compiled"]["compile"]["compile_backend"] == "aot_eager"
    search = sections["search"]
    assert [r["epoch"] for r in search["nb201"]["records"]] == [1, 2] and search["nb201"]["epochs"] == 30
    assert search["darts"]["epochs"] == 50 and search["darts"]["estimate_s"] > 0
    summary = (tmp_path / "summary.md").read_text()
    for heading in ("## correctness nb201", "## levers nb201", "## search", "## levers nb201, compiled",
                    "## levers darts"):
        assert heading in summary
    assert "30-epoch search estimated at" in summary and "the full CIFAR-10 is not available" in summary


def test_a_spent_budget_skips_the_measurements_but_still_writes_the_results(shared_cifar_subset, tmp_path):
    done = run_check(shared_cifar_subset, tmp_path, "--budget-s", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    sections = json.loads((tmp_path / "results.json").read_text())["sections"]
    assert sections["correctness darts"]["passed"]  # correctness is cheap and always runs
    assert "skipped" in sections["levers nb201"]["eager"] and "skipped" in sections["search"]["nb201"]
    assert "skipped" in (tmp_path / "summary.md").read_text()
