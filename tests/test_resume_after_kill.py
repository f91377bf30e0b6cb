"""A search or a retrain killed with SIGKILL mid-run resumes from its checkpoint and ends exactly as an unkilled one."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fakes import write_fake_cifar10

from isdarts.cli import main

ROOT = Path(__file__).resolve().parents[1]
ISDARTS = str(Path(sys.executable).parent / "isdarts")
TIMING = (
    "images_per_s", "epoch_seconds", "search_seconds", "search_hours", "images_per_s_mean", "train_seconds",
    "cost_hours",
)
pytestmark = pytest.mark.slow


def without_timing(doc):
    if isinstance(doc, dict):
        return {k: without_timing(v) for k, v in doc.items() if k not in TIMING}
    if isinstance(doc, list):
        return [without_timing(v) for v in doc]
    return doc


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    fake = tmp_path / "fake"
    write_fake_cifar10(fake, n_per_batch=20, n_test=30, seed=1)
    raw.update(profile="smoke", device="cpu")
    raw["nb201"]["seeds"] = [0]
    raw["data"].update(cifar10_root=str(tmp_path / "absent"), subset_fallback=str(fake))
    raw["nb201"]["search"].update(C=4, N=1, epochs=8, batch_size=20, log_every=1)
    raw["nb201"]["options"]["isdarts"]["iim"].update(n_samples=40, batch_size=20, every_epoch=True)
    raw["darts"]["retrain"].update(C=4, layers=3, epochs=6, warmup_epochs=1, batch_size=20, log_every=1,
                                   train_images=60, test_images="all")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert main(["prepare-data"]) == 0
    return tmp_path


def search_cmd(name: str) -> list[str]:
    return [ISDARTS, "search", "--seed", "0", "--out", f"out_{name}", "--checkpoints", f"ckpt_{name}", "--no-progress"]


def kill_after_first_checkpoint(cmd: list[str], checkpoint: Path, env: dict) -> None:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_then_resume_matches_an_uninterrupted_run(workdir):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    subprocess.run(search_cmd("whole"), env=env, check=True, capture_output=True, timeout=600)

    kill_after_first_checkpoint(search_cmd("killed"), workdir / "ckpt_killed" / "last.pt", env)
    assert not (workdir / "out_killed").exists(), "the kill came after the run finished; the test proves nothing"

    subprocess.run(search_cmd("killed"), env=env, check=True, capture_output=True, timeout=600)
    for name in ("genotype.json", "metrics.json", "history.json"):
        whole = json.loads((workdir / "out_whole" / name).read_text())
        resumed = json.loads((workdir / "out_killed" / name).read_text())
        assert without_timing(resumed) == without_timing(whole), name

    db = sqlite3.connect(workdir / "mlflow.db")
    runs = db.execute("select run_uuid, status from runs").fetchall()
    assert len(runs) == 2 and {s for _, s in runs} == {"FINISHED"}  # the killed run was resumed, not duplicated
    for run_uuid, _ in runs:
        steps = db.execute("select step from metrics where run_uuid=? and key='train_loss'", (run_uuid,)).fetchall()
        assert sorted({s for (s,) in steps}) == list(range(1, 9))  # an epoch re-run after the kill may log twice


def retrain_cmd(name: str) -> list[str]:
    return [ISDARTS, "retrain", "--seed", "0", "--genotype", "DARTS_V2", "--out", f"rt_{name}", "--checkpoints",
            f"rtckpt_{name}", "--no-progress"]


def assert_same_retrain(whole_dir: Path, resumed_dir: Path) -> None:
    for name in ("metrics.json", "history.json"):
        whole = without_timing(json.loads((whole_dir / name).read_text()))
        resumed = without_timing(json.loads((resumed_dir / name).read_text()))
        for doc in (whole, resumed):
            if isinstance(doc, dict):
                doc.pop("device_name", None)
        assert resumed == whole, name


def test_retrain_killed_mid_run_resumes_to_the_same_result(workdir):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    subprocess.run(retrain_cmd("whole"), env=env, check=True, capture_output=True, timeout=600)
    kill_after_first_checkpoint(retrain_cmd("killed"), workdir / "rtckpt_killed" / "retrain_last.pt", env)
    assert not (workdir / "rt_killed").exists(), "the kill came after the run finished; the test proves nothing"

    subprocess.run(retrain_cmd("killed"), env=env, check=True, capture_output=True, timeout=600)
    assert_same_retrain(workdir / "rt_whole", workdir / "rt_killed")
    assert json.loads((workdir / "rt_killed" / "metrics.json").read_text())["epochs"] == 6


def test_retrain_stopped_by_sigterm_inside_an_epoch_resumes_to_the_same_result(workdir):
    """Preemption: SIGTERM mid-run finishes the step, writes a checkpoint inside the epoch and exits 143 with
    a line saying how to resume; the re-run ends as the uninterrupted retrain (the fault suite does the same
    for searches at drawn moments)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    subprocess.run(retrain_cmd("whole"), env=env, check=True, capture_output=True, timeout=600)
    checkpoint = workdir / "rtckpt_term" / "retrain_last.pt"
    proc = subprocess.Popen(retrain_cmd("term"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not checkpoint.exists() and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM, err[-500:]
    assert "stopped by SIGTERM" in err and "to resume" in err

    subprocess.run(retrain_cmd("term"), env=env, check=True, capture_output=True, timeout=600)
    assert_same_retrain(workdir / "rt_whole", workdir / "rt_term")
