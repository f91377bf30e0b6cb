"""scripts/run_study.py end to end on a tiny copy of the study profile: each search runs through the real
`isdarts search` in its own process, lands in runs/study/, is skipped once done, and a bad request is refused
before any work; the report's study page then reads the runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from fakes import write_fake_cifar10

from isdarts.data.cifar import load_cifar10, locate_cifar10, save_prepared
from isdarts.report.study import build_study

ROOT = Path(__file__).resolve().parents[1]


def tiny_study(tmp_path: Path) -> Path:
    """A project folder with prepared data and the study profile cut to a few tiny epochs."""
    root = tmp_path / "project"
    raw = yaml.safe_load((ROOT / "profiles" / "study.yaml").read_text())
    assert raw["profile"] == "study" and {"darts1", "isdarts", "lambda_darts"} <= set(raw["nb201"]["methods"])
    # DARTS 2nd order stands for a method the profile lacks.
    raw["nb201"]["methods"] = [m for m in raw["nb201"]["methods"] if m != "darts2"]
    raw["nb201"]["options"].pop("darts2", None)
    raw["device"] = "cpu"
    raw["nb201"]["search"].update(C=4, epochs=3, image_size=8, test_images=16, log_every=1)
    for name, section in raw["nb201"]["options"].items():  # every section is validated: each must fit 3 epochs
        if name != "isdarts" and "shrink" in section:
            section["shrink"] = {"steps": 1, "interval": 1}
    raw["nb201"]["options"]["isdarts"].update(epochs=5, shrink={"steps": 4, "interval": 1},
                                               iim={"source": "train_full", "n_samples": 16, "batch_size": 16,
                                                    "every_epoch": True})
    root.mkdir()
    (root / "study.yaml").write_text(yaml.safe_dump(raw))
    cifar = tmp_path / "cifar"
    write_fake_cifar10(cifar, n_per_batch=10, n_test=16, seed=0)
    arrays = load_cifar10(locate_cifar10(cifar, download=False, subset_fallback=cifar))
    save_prepared(arrays, {"kind": "subset", "verified": False, "note": "synthetic"}, root / "data" / "prepared")
    return root


def run_study(root: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "ISDARTS_LOG_DIR": str(tmp_path / "logs"), "HOME": str(tmp_path)}
    cmd = [sys.executable, str(ROOT / "scripts" / "run_study.py"), "--params", str(root / "study.yaml"),
           "--root", str(root), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_run_study_runs_each_search_once_and_the_page_reads_them(tmp_path):
    root = tiny_study(tmp_path)
    done = run_study(root, tmp_path, "--methods", "darts1", "isdarts", "--seeds", "0", "--jobs", "2",
                     "--threads", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2/2 searches done" in done.stdout
    for method in ("darts1", "isdarts"):
        folder = root / "runs" / "study" / "nb201" / method / "seed_0"
        assert {p.name for p in folder.iterdir()} >= {"history.json", "metrics.json", "genotype.json"}
        assert (root / "logs" / "study" / f"{method}-seed0.log").is_file()
        assert (root / "checkpoints" / "study" / "nb201" / method / "seed_0").is_dir()
    page, figures = build_study(root / "runs" / "study", tmp_path / "figures")
    assert len(figures) == 1 and [run.history.method for run in page.reproduced] == ["darts1", "isdarts"]
    assert all(run.metrics.profile == "study" for run in page.reproduced)
    assert [run.history.epochs[-1].epoch for run in page.reproduced] == [3, 5]

    again = run_study(root, tmp_path, "--methods", "darts1", "--seeds", "0")
    assert again.returncode == 0 and "darts1-seed0: done already" in again.stdout


def test_run_study_refuses_a_method_the_profile_lacks_and_missing_data(tmp_path):
    root = tiny_study(tmp_path)
    bad = run_study(root, tmp_path, "--methods", "darts2")
    assert bad.returncode == 2 and "no nb201 section for darts2" in bad.stderr
    (root / "data" / "prepared" / "manifest.json").unlink()
    missing = run_study(root, tmp_path)
    assert missing.returncode == 2 and "dvc repro prepare_data" in missing.stderr
    assert not (root / "runs").exists()


def test_the_study_profile_runs_every_nb201_method_of_the_table():
    from isdarts.config import load_params
    from isdarts.registry import METHODS

    study = load_params(ROOT / "profiles" / "study.yaml").nb201
    assert set(study.methods) == {name for name, spec in METHODS.items() if "nb201" in spec.spaces}
    # The DARTS family gets the paper's 19,500 α steps (443 epochs x 44 on the subset's 50/50 split).
    assert all(study.search(m).epochs == 443 for m in study.methods if METHODS[m].bilevel)
