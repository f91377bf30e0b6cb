"""The whole DVC pipeline on a smoke profile, in a scratch git repository, on tiny CIFAR-format data.

Runs the real `dvc repro` (stage scripts, isdarts, MLflow's sqlite store), then checks that a params
edit re-runs only the stages that read it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from isdarts.data.cifar import write_fake_cifar10

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def smoke_params(fake_cifar: Path) -> dict:
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    raw["data"].update(cifar10_root="data/cifar10-raw", subset_fallback=str(fake_cifar))
    raw["nb201_seeds"] = [0, 1]
    raw["nb201_search"].update(C=4, N=1, epochs=5, batch_size=32, log_every=2)
    raw["nb201_search"]["shrink"] = {"steps": 4, "interval": 1}
    raw["nb201_search"]["iim"].update(n_samples=32, batch_size=32)
    return raw


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "stages", "isdarts"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    fake = tmp_path / "fake-cifar"
    write_fake_cifar10(fake, n_per_batch=20, n_test=30, seed=0)
    (repo / "params.yaml").write_text(yaml.safe_dump(smoke_params(fake), sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    run(["git", "init", "-q"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "smoke"], repo, env)
    return repo, env


def test_dvc_repro_smoke_profile_end_to_end_then_a_params_edit_reruns_only_what_reads_it(project):
    repo, env = project
    first = run(["dvc", "repro"], repo, env)

    for seed in (0, 1):
        folder = repo / "runs/nb201/isdarts" / f"seed_{seed}"
        genotype = json.loads((folder / "genotype.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        history = json.loads((folder / "history.json").read_text())
        assert genotype["arch_str"] == metrics["arch_str"] and "none" not in genotype["arch_str"]
        assert metrics["profile"] == "smoke" and metrics["paper_settings"] is False
        assert [r["shrink_step"] for r in history["epochs"]] == [0, 1, 2, 3, None]
    results = json.loads((repo / "results/nb201_isdarts.json").read_text())
    assert [r["seed"] for r in results["runs"]] == [0, 1]
    table = (repo / "reports/table1.md").read_text()
    assert "not paper-scale" in table and "smoke" in table
    with open(repo / "reports/table1.csv", newline="") as f:
        ours = [row for row in csv.DictReader(f) if row["source"] == "ours"]
    assert len(ours) == 1 and ours[0]["profile"] == "smoke"
    assert float(ours[0]["cifar10_test_mean"]) == pytest.approx(results["summary"]["mean"]["cifar10_test"], abs=0.01)
    assert "IS-DARTS" in table and "91.55" in table  # paper row beside ours

    # MLflow: one run per search in the project's sqlite store, with params, per-epoch metrics and tags.
    db = sqlite3.connect(repo / "mlflow.db")
    runs = db.execute("select run_uuid, status from runs").fetchall()
    assert len(runs) == 2 and {status for _, status in runs} == {"FINISHED"}
    for run_uuid, _ in runs:
        tags = dict(db.execute("select key, value from tags where run_uuid=?", (run_uuid,)).fetchall())
        assert tags["space"] == "nb201" and tags["method"] == "isdarts"
        assert tags["dvc.stage"].startswith("search_nb201@")
        assert tags["git.commit"]
        steps = db.execute(
            "select count(*) from metrics where run_uuid=? and key='train_loss'", (run_uuid,)
        ).fetchone()[0]
        assert steps == 5
        iim_keys = db.execute(
            "select count(distinct key) from metrics where run_uuid=? and key like 'iim/%'", (run_uuid,)
        ).fetchone()[0]
        assert iim_keys == 30  # every op on every edge was measured before it was pruned
        params = dict(db.execute("select key, value from params where run_uuid=?", (run_uuid,)).fetchall())
        assert params["search.epochs"] == "5"
    artifacts = list((repo / "mlartifacts").rglob("genotype.json"))
    assert len(artifacts) == 2
    assert "Running stage 'report'" in first.stdout

    status = subprocess.run(["dvc", "status", "-q"], cwd=repo, env=env)
    assert status.returncode == 0, "pipeline should be up to date right after repro"

    # A new seed: only its search runs, then lookup and report; the other seeds are not re-run.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["nb201_seeds"] = [0, 1, 2]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = run(["dvc", "repro"], repo, env)
    assert "Running stage 'search_nb201@2'" in second.stdout
    assert "Running stage 'search_nb201@0'" not in second.stdout
    assert "Running stage 'search_nb201@1'" not in second.stdout
    assert "Running stage 'prepare_data'" not in second.stdout
    assert "Running stage 'lookup_nb201'" in second.stdout
    assert len(json.loads((repo / "results/nb201_isdarts.json").read_text())["runs"]) == 3
