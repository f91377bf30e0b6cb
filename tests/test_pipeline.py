"""The whole DVC pipeline on a smoke profile, in a scratch git repository, on tiny CIFAR-format data.

Runs the real `dvc repro` (stage scripts, isdarts, MLflow's sqlite store), then checks that a params
edit re-runs only the stages that read it.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # minutes on a busy 2-core machine
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def smoke_params(fake_cifar: Path, fake_svhn: Path | None = None) -> dict:
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    raw["data"].update(cifar10_root="data/cifar10-raw", subset_fallback=str(fake_cifar))
    nb201 = raw["nb201"]
    # The methods whose rows the tables below check; every other method has its own tiny end-to-end search and
    # resume in tests/test_every_method_searches.py, and the stages run each method the same way.
    nb201["methods"] = ["isdarts", "darts1", "darts2", "lambda_darts", "idarts"]
    nb201["seeds"] = [0]
    nb201["search"].update(C=4, N=1, epochs=5, batch_size=32, log_every=2)
    for name in ("isdarts", "idarts"):
        nb201["options"][name]["iim"].update(n_samples=32, batch_size=32)
    darts = raw["darts"]
    # The DARTS-space methods other than IS-DARTS have their own tiny end-to-end searches (tests/test_gdas.py,
    # tests/test_pcdarts.py); here one method keeps this whole-pipeline test as short as it was.
    darts["methods"] = ["isdarts"]
    darts["search"].update(C=4, N=1, epochs=3, batch_size=16, log_every=1, image_size=8, train_images=48,
                           test_images=16)
    darts["options"]["isdarts"].update(shrink={"steps": 2, "interval": 1},
                                       iim={"source": "holdout_subset", "n_samples": 16, "batch_size": 16,
                                            "every_epoch": True})
    darts["retrain"].update(C=4, layers=3, epochs=2, warmup_epochs=1, batch_size=16, cutout=4, log_every=1,
                            image_size=32, train_images=32, test_images="all")
    darts["imagenet"].update(tiny_train_per_class=4, tiny_val_per_class=1, C=4, layers=3, epochs=1, warmup_epochs=0,
                             batch_size=8, image_size=32, workers=0)
    darts["sweep"].update(epochs=3, train_images=32, rates=["r1", "r0_5"])
    darts["sweep"]["schedules"]["r0_5"].update(steps=2, interval=1)
    # The robust spaces: S1 (a pair of ops per edge) on CIFAR-10 and, given its files, on SVHN as well.
    robust = raw["robust"]
    robust.update(spaces=["s1"], methods=["isdarts"], seeds=[0], extra_datasets=["svhn"] if fake_svhn else [])
    # The fake SVHN holds 25 training and 15 test images.
    robust["search"].update(darts["search"], train_images=24, test_images=12)
    robust["options"]["isdarts"].update(darts["options"]["isdarts"])
    robust["retrain"].update(darts["retrain"], train_images=24)
    if fake_svhn is not None:
        raw["data"]["svhn_root"] = str(fake_svhn)
    return raw


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    # The smoke project (these params, fake CIFAR-format data) in a fresh git + DVC repository.
    from benchmark_cluster import make_project  # scripts/ is put on sys.path below

    return make_project(tmp_path, jobs_cpus=None)


def test_dvc_repro_smoke_profile_end_to_end_then_a_params_edit_reruns_only_what_reads_it(project):
    from isdarts.spaces.darts.genotype import DartsGenotype

    repo, env = project
    first = run(["dvc", "repro"], repo, env)

    methods = yaml.safe_load((repo / "params.yaml").read_text())["nb201"]["methods"]
    assert set(methods) == {"isdarts", "darts1", "darts2", "lambda_darts", "idarts"}
    for method in methods:
        folder = repo / "runs/nb201" / method / "seed_0"
        genotype = json.loads((folder / "genotype.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        assert genotype["arch_str"] == metrics["arch_str"] and metrics["method"] == method
        assert metrics["profile"] == "smoke" and metrics["paper_settings"] is False
        results = json.loads((repo / f"results/nb201_{method}.json").read_text())
        assert [r["seed"] for r in results["runs"]] == [0]
    history = json.loads((repo / "runs/nb201/isdarts/seed_0/history.json").read_text())
    assert [r["shrink_step"] for r in history["epochs"]] == [0, 1, 2, 3, None]
    assert "alpha" in json.loads((repo / "runs/nb201/darts2/seed_0/history.json").read_text())["epochs"][-1]

    table = (repo / "reports/table1.md").read_text()
    assert "smoke" in table and "IS-DARTS" in table and "91.55" in table  # paper row beside ours
    with open(repo / "reports/table1.csv", newline="") as f:
        ours = [row for row in csv.DictReader(f) if row["source"] == "ours"]
    assert {row["method"] for row in ours} >= {"IS-DARTS", "DARTS (1st)", "DARTS (2nd)", "Λ-DARTS"}
    isdarts = json.loads((repo / "results/nb201_isdarts.json").read_text())
    row = next(r for r in ours if r["method"] == "IS-DARTS")
    assert float(row["cifar10_test_mean"]) == pytest.approx(isdarts["summary"]["mean"]["cifar10_test"], abs=0.01)
    assert "I-DARTS" in (repo / "reports/table_a1.md").read_text()

    # DARTS space: the searched cell is a valid two-input-per-node genotype, retrained and transferred.
    searched = repo / "runs/darts/search/isdarts/seed_0/genotype.json"
    genotype = DartsGenotype.from_json(json.loads(searched.read_text()))
    assert all(op != "none" for node in genotype.normal + genotype.reduce for op, _ in node)
    retrain = json.loads((repo / "runs/darts/retrain/isdarts/seed_0/metrics.json").read_text())
    assert retrain["epochs"] == 2 and retrain["params_m"] > 0 and retrain["profile"] == "smoke"
    imagenet = json.loads((repo / "runs/darts/imagenet/isdarts/seed_0/metrics.json").read_text())
    assert 0 <= imagenet["top1_error"] <= 100 and imagenet["madds_input"] == 224 and imagenet["data"]["tiny"]
    for rate in ("r1", "r0_5"):
        assert json.loads((repo / f"runs/darts/sweep/{rate}/retrain/metrics.json").read_text())["rate_name"] == rate
    for name in ("table2", "table3", "table_a2"):
        assert "smoke" in (repo / f"reports/{name}.md").read_text(), name
    # The robust space S1, searched and retrained on CIFAR-10 and on SVHN, each cell in the robust table.
    for folder, dataset in (("s1", None), ("s1-svhn", "svhn")):
        metrics = json.loads((repo / f"runs/{folder}/retrain/isdarts/seed_0/metrics.json").read_text())
        assert metrics["space"] == "s1" and metrics.get("dataset") == dataset and metrics["profile"] == "smoke"
    robust = (repo / "reports/table_robust.md").read_text()
    assert "| S1 | CIFAR-10 | IS-DARTS | smoke |" in robust and "| S1 | SVHN | IS-DARTS | smoke |" in robust
    assert any((repo / "reports/figures").glob("*.png"))

    # MLflow: one run per search/retrain/transfer in the project's sqlite store, with per-epoch metrics and tags.
    db = sqlite3.connect(repo / "mlflow.db")
    runs = db.execute("select run_uuid, status from runs").fetchall()
    assert {status for _, status in runs} == {"FINISHED"}
    searches = db.execute(
        "select r.run_uuid from runs r join tags t on r.run_uuid = t.run_uuid "
        "where t.key = 'dvc.stage' and t.value like 'search_nb201@isdarts-%'"
    ).fetchall()
    assert len(searches) == 1
    (run_uuid,) = searches[0]
    tags = dict(db.execute("select key, value from tags where run_uuid=?", (run_uuid,)).fetchall())
    assert tags["space"] == "nb201" and tags["method"] == "isdarts" and tags["git.commit"]
    steps = db.execute("select count(*) from metrics where run_uuid=? and key='train_loss'", (run_uuid,)).fetchone()[0]
    assert steps == 5
    iim_keys = db.execute(
        "select count(distinct key) from metrics where run_uuid=? and key like 'iim/%'", (run_uuid,)
    ).fetchone()[0]
    # Every op on every edge was measured before it was pruned; `none`'s IIM is infinite, which is not logged.
    assert iim_keys == 6 * 4
    stage_tags = {v for (v,) in db.execute("select value from tags where key = 'dvc.stage'").fetchall()}
    assert {"retrain_darts@isdarts-0", "transfer_imagenet@isdarts-0", "sweep_search@r1"} <= stage_tags
    assert "Running stage 'report'" in first.stdout

    status = subprocess.run(["dvc", "status", "-q"], cwd=repo, env=env)
    assert status.returncode == 0, "pipeline should be up to date right after repro"

    # Every training printed its progress line with an ETA under DVC.
    assert "search_nb201@isdarts-0: epoch 1/5 (20%)" in first.stderr + first.stdout
    assert "search_nb201@isdarts-0: epoch 5/5 (100%)" in first.stderr + first.stdout

    # The results go into git (as in the project); the queued experiments below start from this commit.
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "smoke results"], repo, env)

    # An experiment that changes one method's option and the retraining re-runs that method's search and
    # lookup, the retrains and the report; nothing else.
    second = run(["dvc", "exp", "run", "-S", "nb201.options.darts1.arch.lr=0.001", "-S", "darts.retrain.epochs=3",
                  "-n", "edit"], repo, env)
    ran = {line.split("'")[1] for line in second.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {
        "search_nb201@darts1-0", "lookup_nb201@darts1", "retrain_darts@isdarts-0", "sweep_retrain@r1",
        "sweep_retrain@r0_5", "report",
    }, ran
    run(["git", "checkout", "-q", "--", "."], repo, env)  # back to the committed results for the queue
    queued_experiments_run_side_by_side_and_keep_every_mlflow_run(repo, env)


def queued_experiments_run_side_by_side_and_keep_every_mlflow_run(repo: Path, env: dict[str, str]) -> None:
    """Two queued experiments on two workers: each re-runs only the darts1 search it changes (the checkpoints
    are no DVC outputs, so the copies DVC runs them in are up to date otherwise), both land in `dvc exp show`,
    and their MLflow runs land in the repository's one store, tagged with the experiment's name."""
    db = repo / "mlflow.db"
    runs_before = sqlite3.connect(db).execute("select count(*) from runs").fetchone()[0]
    names = {"lr-2e3": 0.002, "lr-5e3": 0.005}
    for name, lr in names.items():
        run(["dvc", "exp", "run", "--queue", "-S", f"nb201.options.darts1.arch.lr={lr}", "-n", name], repo, env)
    run(["dvc", "queue", "start", "-j", "2"], repo, env)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            status = run(["dvc", "queue", "status"], repo, env).stdout
            rows = [line.split() for line in status.splitlines() if any(n in line.split() for n in names)]
            if len(rows) == 2 and all(row[-1] in ("Success", "Failed") for row in rows):
                break
            time.sleep(5)
        assert all(row[-1] == "Success" for row in rows), status
    finally:
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=repo, env=env, capture_output=True, timeout=120)
    for name in names:
        log = run(["dvc", "queue", "logs", name], repo, env).stdout
        ran = {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")}
        assert ran == {"search_nb201@darts1-0", "lookup_nb201@darts1", "report"}, (name, ran)

    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo, env).stdout)
    experiments = {exp["name"]: exp for rev in shown for exp in (rev.get("experiments") or [])}
    for name, lr in names.items():
        data = experiments[name]["revs"][0]["data"]
        assert data["params"]["params.yaml"]["data"]["nb201"]["options"]["darts1"]["arch"]["lr"] == lr
        assert "results/nb201_darts1.json" in data["metrics"]

    con = sqlite3.connect(db)
    tagged = dict(con.execute(
        "select t.value, count(*) from tags t join runs r using (run_uuid) where t.key = 'dvc.exp_name' "
        "and r.status = 'FINISHED' group by t.value"
    ).fetchall())
    assert tagged.get("lr-2e3") == 1 and tagged.get("lr-5e3") == 1, tagged
    assert con.execute("select count(*) from runs").fetchone()[0] == runs_before + 2
    assert not list(repo.glob(".dvc/tmp/exps/*/mlflow.db")), "a queued experiment wrote its own store"
