"""The suite's own parallel set-up in tests/conftest.py (pytest-xdist, as README's test command runs it): each
worker's share of the cores, `-n auto`'s worker count, and the files holding slow tests scheduled first.

Each test runs pytest in a subprocess on two probe files, with tests/conftest.py loaded as a plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PROBE = '''
import json, os, torch

def test_probe():
    record = {"omp": os.environ.get("OMP_NUM_THREADS"), "torch": torch.get_num_threads()}
    with open(os.environ["PROBE_OUT"], "a") as out:
        out.write(json.dumps(record) + "\\n")
'''


def pytest_in(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") and not key.startswith("PYTEST_XDIST")}
    env.update(PYTHONPATH=str(TESTS), PROBE_OUT=str(folder / "probe.jsonl"))
    cmd = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-c", os.devnull,
           "--rootdir", str(folder), "-o", "markers=slow", *args]
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def probe_files(folder: Path) -> None:
    (folder / "test_a_fast.py").write_text(PROBE)
    slow = PROBE.replace("def test_probe", "@pytest.mark.slow\ndef test_probe")
    (folder / "test_b_slow.py").write_text("import pytest\n" + slow)  # sorts after test_a_fast.py by name


def test_each_worker_and_what_it_starts_get_their_share_of_the_cores(tmp_path):
    probe_files(tmp_path)
    pytest_in(tmp_path, "-n", "2", "--dist", "loadfile", "-q")
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    records = [json.loads(line) for line in (tmp_path / "probe.jsonl").read_text().splitlines()]
    assert records == [{"omp": str(share), "torch": share}] * 2


def test_n_auto_starts_a_worker_per_core_this_process_may_use(tmp_path):
    probe_files(tmp_path)
    cores = len(os.sched_getaffinity(0))
    done = pytest_in(tmp_path, "-n", "auto", "-v")
    assert f"created: {cores}/{cores} worker" in done.stdout, done.stdout


def test_files_holding_a_slow_test_are_collected_first(tmp_path):
    probe_files(tmp_path)
    listed = pytest_in(tmp_path, "--collect-only", "-q").stdout.splitlines()
    ids = [line for line in listed if "::" in line]
    assert ids == ["test_b_slow.py::test_probe", "test_a_fast.py::test_probe"]
