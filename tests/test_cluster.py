"""`isdarts cluster`: the pipeline as SLURM jobs, on a real one-node SLURM cluster (scripts/local_slurm.py).

The fast tests check the params section, the stage selection and the job scripts. The slow ones need root
and Debian's slurm-wlm and munge (installed here when missing, as CI does): the smoke pipeline submitted,
waited for and collected ends with `dvc status` clean and every result equal to a plain `dvc repro` of the
same project; a search job stopped mid-run by `scancel --signal=TERM` requeues itself and ends identical to an
uninterrupted search, in one MLflow run; and the results travel through a shared DVC remote to a fresh clone.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from services import require_commands

from isdarts.cluster.graph import Stage, load_stages, stages_to_run
from isdarts.cluster.slurm import batch_script
from isdarts.config.cluster import STAGE_KINDS, read_cluster
from isdarts.config.params import load_params
from isdarts.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "scripts"))
import local_slurm  # noqa: E402 (scripts/ is not a package)
from benchmark_cluster import TABLES, make_project, results, table  # noqa: E402

# ---------------------------------------------------------------- params, stage selection, job scripts


def test_the_stage_kinds_are_dvc_yamls_stages() -> None:
    assert tuple(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]) == STAGE_KINDS


def test_every_profile_has_a_valid_cluster_section_and_the_paper_one_spreads_the_transfer() -> None:
    quick, paper = load_params(ROOT / "profiles/quick.yaml"), load_params(ROOT / "profiles/paper.yaml")
    assert quick.cluster.resources("search_nb201").gpus_per_node == 0
    assert paper.cluster.resources("search_nb201").gpus_per_node == 1
    transfer = paper.cluster.resources("transfer_imagenet")
    assert (transfer.nodes, transfer.gpus_per_node, transfer.processes_per_node) == (2, 8, 8)
    assert {"--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8", "--cpus-per-task=64"} <= set(
        transfer.sbatch_options())
    assert paper.cluster.resources("report") == paper.cluster.defaults


@pytest.mark.parametrize("section, fragment", [
    ({"defaults": {"time": "forever"}}, "cluster.defaults.time"),
    ({"defaults": {"mem": "lots"}}, "cluster.defaults.mem"),
    ({"defaults": {"cpus": 0}}, "cluster.defaults.cpus"),
    ({"defaults": {"gpus": 1}}, "unknown key(s) cluster.defaults.gpus"),
    ({"defaults": {}, "stages": {"serch_nb201": {}}}, "unknown key(s) cluster.stages.serch_nb201"),
    ({"defaults": {}, "stages": {"search_nb201": {"nodes": 2}}}, "only transfer_imagenet"),
    ({"defaults": {"extra": ["constraint=a100"]}}, "cluster.defaults.extra"),
    ({"defaults": {"partition": "gpu; rm -rf /"}}, "cluster.defaults.partition"),
    ({"defaults": {}, "rendezvous_port": 70000}, "cluster.rendezvous_port"),
])
def test_a_wrong_cluster_value_is_refused_naming_its_key(section, fragment) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        read_cluster(section)
    assert fragment in str(err.value)


def test_a_stage_kind_inherits_the_defaults_it_does_not_set() -> None:
    cluster = read_cluster({"defaults": {"partition": "gpu", "time": "1-00:00:00"},
                            "stages": {"retrain_darts": {"gpus_per_node": 1}}})
    retrain = cluster.resources("retrain_darts")
    assert (retrain.partition, retrain.time, retrain.gpus_per_node) == ("gpu", "1-00:00:00", 1)
    assert cluster.resources("report").gpus_per_node == 0


STAGES = [
    Stage("prepare", "python p.py", ()),
    Stage("search@a-0", "python s.py a", ("prepare",)),
    Stage("search@b-0", "python s.py b", ("prepare",)),
    Stage("lookup@a", "python l.py a", ("search@a-0",)),
    Stage("lookup@b", "python l.py b", ("search@b-0",)),
    Stage("report", "python r.py", ("lookup@a", "lookup@b")),
]


def _names(stages: list[Stage]) -> list[str]:
    return [s.name for s in stages]


def test_what_runs_is_what_dvc_repro_would_run_upstream_first() -> None:
    assert _names(stages_to_run(STAGES, set())) == []
    assert _names(stages_to_run(STAGES, {"search@a-0"})) == ["search@a-0", "lookup@a", "report"]
    assert _names(stages_to_run(STAGES, {"prepare"})) == _names(STAGES)
    # Targets: only they and what they read; a kind names every instance.
    assert _names(stages_to_run(STAGES, {"prepare"}, ["lookup@b"])) == ["prepare", "search@b-0", "lookup@b"]
    assert _names(stages_to_run(STAGES, {"prepare"}, ["search"])) == ["prepare", "search@a-0", "search@b-0"]
    assert _names(stages_to_run(STAGES, {"report"}, ["search"])) == []
    with pytest.raises(ConfigError, match="no stage named serch"):
        stages_to_run(STAGES, set(), ["serch"])


def test_the_real_pipeline_graph_comes_from_dvc_upstream_first() -> None:
    stages = load_stages(ROOT)
    names = _names(stages)
    assert names[0] == "prepare_data" and names[-1] == "report"
    position = {name: i for i, name in enumerate(names)}
    for stage in stages:
        assert all(position[up] < position[stage.name] for up in stage.upstream), stage
    search = next(s for s in stages if s.name == "search_nb201@isdarts-0")
    assert search.upstream == ("prepare_data",) and search.kind == "search_nb201"
    assert search.cmd.startswith("python stages/search_nb201.py --method isdarts --seed 0")
    transfer = next(s for s in stages if s.kind == "transfer_imagenet")
    assert set(transfer.upstream) == {"imagenet_data", f"search_darts@{transfer.name.split('@')[1]}"}


def test_a_job_script_runs_the_stage_as_a_step_and_requeues_it_when_it_stops_at_a_checkpoint(tmp_path) -> None:
    cluster = read_cluster({"defaults": {"partition": "gpu", "gpus_per_node": 1, "extra": ["--constraint=a100"]},
                            "signal_before_limit_s": 300})
    stage = Stage("search_nb201@isdarts-0", "python stages/search_nb201.py --method isdarts --seed 0", ())
    script = batch_script(stage, cluster.resources(stage.kind), cluster, tmp_path, tmp_path / "s.log",
                          tmp_path / "s.status.json")
    for line in ("#SBATCH --job-name=isdarts:search_nb201@isdarts-0", "#SBATCH --requeue",
                 "#SBATCH --signal=TERM@300", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --constraint=a100", "#SBATCH --kill-on-invalid-dep=yes",
                 'srun --ntasks=1 --cpus-per-task="$SLURM_CPUS_PER_TASK" python stages/search_nb201.py'):
        assert line in script, line
    assert 'scontrol requeue "$SLURM_JOB_ID"' in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0  # valid bash


def test_a_multi_node_transfer_starts_one_torchrun_per_node_with_the_rendezvous_on_the_first(tmp_path) -> None:
    paper = load_params(ROOT / "profiles/paper.yaml").cluster
    stage = Stage("transfer_imagenet@isdarts-0", "python stages/transfer_imagenet.py --method isdarts --seed 0", ())
    script = batch_script(stage, paper.resources(stage.kind), paper, tmp_path, tmp_path / "t.log", tmp_path / "t.json")
    assert 'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in script
    assert ('srun --ntasks-per-node=1 --cpus-per-task="$SLURM_CPUS_PER_TASK" torchrun --nnodes=2 '
            '--nproc_per_node=8 --rdzv_backend=c10d --rdzv_id="$SLURM_JOB_ID" --rdzv_endpoint="$head:29500" '
            "stages/transfer_imagenet.py --method isdarts --seed 0") in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


# ---------------------------------------------------------------- on a real SLURM cluster


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict[str, str]:
    """A one-node cluster with this machine's CPUs; the environment its clients need."""
    require_commands(["slurmctld", "slurmd", "sbatch", "munged"], ["slurm-wlm", "munge"])
    if os.geteuid() != 0:
        pytest.skip("a local SLURM cluster needs root (scripts/local_slurm.py)")
    base = tmp_path_factory.mktemp("slurm")
    env = local_slurm.start(base)
    yield env
    local_slurm.stop(base)


def _release_requeued(env: dict[str, str]) -> None:
    """SLURM holds a requeued job for about two minutes before it may start again; let it start now."""
    out = subprocess.run(["squeue", "--noheader", "--format=%i %r"], env=env, capture_output=True, text=True).stdout
    for line in out.splitlines():
        job_id, reason = line.split(maxsplit=1)
        if reason.strip() == "BeginTime":
            subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], env=env, capture_output=True)


@pytest.fixture(scope="module")
def pipelines(slurm, tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """The same smoke project twice: one run by `dvc repro`, one by `isdarts cluster submit` (side by side)."""
    base = tmp_path_factory.mktemp("cluster")
    # Two NB201 methods and one sweep point: the whole graph, kept short; one CPU per job, two jobs at a time.
    plain, env = make_project(base / "plain", ["isdarts", "darts1"], ["r1"], robust=False)
    on_cluster, _ = make_project(base / "cluster", ["isdarts", "darts1"], ["r1"], robust=False)
    env = {**env, **slurm}
    repro = subprocess.Popen(["dvc", "repro"], cwd=plain, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    submitted = run(["isdarts", "cluster", "submit"], on_cluster, env)
    again = run(["isdarts", "cluster", "submit"], on_cluster, env)
    collected = run(["isdarts", "cluster", "collect", "--wait"], on_cluster, env)
    out, _ = repro.communicate(timeout=900)
    assert repro.returncode == 0, out
    return plain, on_cluster, {**env, "submitted": submitted, "again": again, "collected": collected}


@pytest.mark.slow
def test_the_smoke_pipeline_on_slurm_ends_as_dvc_repro_does_with_dvc_status_clean(pipelines) -> None:
    plain, on_cluster, env = pipelines
    submitted = env["submitted"].splitlines()
    assert len(submitted) == 12 and submitted[0].startswith("prepare_data: job ")
    report = next(line for line in submitted if line.startswith("report: job"))
    assert report.count(",") == 8  # after all nine stages it reads
    # A second submit while they were queued added nothing.
    # (Stages that had finished by then were recorded in dvc.lock first, so DVC no longer saw them out of date.)
    assert all(" already " in line or line.startswith("recorded in dvc.lock")
               for line in env["again"].splitlines()), env["again"]
    assert "recorded in dvc.lock" in env["again"] + env["collected"]
    assert "up to date" in run(["dvc", "status"], on_cluster, env)
    assert run(["isdarts", "cluster", "submit"], on_cluster, env).startswith("every stage is up to date")
    ours, reference = results(on_cluster), results(plain)
    assert len(ours) == 20 and ours.keys() == reference.keys()
    assert [k for k in ours if ours[k] != reference[k]] == []
    for name in TABLES:
        assert table(on_cluster, name) == table(plain, name), name
    status = run(["isdarts", "cluster", "status"], on_cluster, env).splitlines()
    assert len(status) == 12 and all("COMPLETED" in line for line in status)


def _mlflow_runs(repo: Path, stage: str) -> list[tuple[str, str]]:
    with sqlite3.connect(repo / "mlflow.db") as db:
        return db.execute(
            "select r.run_uuid, r.status from runs r join tags t on r.run_uuid = t.run_uuid "
            "where t.key = 'dvc.stage' and t.value = ?", (stage,)).fetchall()


@pytest.mark.slow
def test_results_pushed_to_a_shared_dvc_remote_rebuild_the_report_in_a_fresh_clone(pipelines, tmp_path) -> None:
    _, on_cluster, env = pipelines
    remote = tmp_path / "shared-dvc-remote"
    run(["dvc", "remote", "add", "--default", "shared", str(remote)], on_cluster, env)
    run(["dvc", "push"], on_cluster, env)
    run(["git", "add", "-A"], on_cluster, env)
    run(["git", "commit", "-qm", "results from the cluster"], on_cluster, env)
    clone = tmp_path / "laptop"
    run(["git", "clone", "-q", str(on_cluster), str(clone)], tmp_path, env)
    assert not (clone / "data/prepared").exists()  # in the DVC cache, not in git
    run(["dvc", "pull"], clone, env)
    assert "up to date" in run(["dvc", "status"], clone, env)
    assert "Stage 'report' didn't change" in run(["dvc", "repro", "report"], clone, env)
    for model in (on_cluster / "models").rglob("*.pt2"):
        assert (clone / model.relative_to(on_cluster)).read_bytes() == model.read_bytes()


@pytest.mark.slow
def test_a_search_job_stopped_by_scancel_requeues_and_ends_as_an_uninterrupted_search(pipelines) -> None:
    plain, on_cluster, env = pipelines
    stage = "search_nb201@isdarts-0"
    for repo in (plain, on_cluster):  # a longer search, so that the signal lands inside it
        raw = yaml.safe_load((repo / "params.yaml").read_text())
        raw["nb201"]["search"]["epochs"] = 30
        (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    before = _mlflow_runs(on_cluster, stage)
    checkpoint = on_cluster / "checkpoints/nb201/isdarts/seed_0/last.pt"
    checkpoint.unlink(missing_ok=True)
    repro = subprocess.Popen(["dvc", "repro", stage], cwd=plain, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    job = run(["isdarts", "cluster", "submit", stage], on_cluster, env).split("job ")[1].split()[0]
    deadline = time.monotonic() + 300
    while not checkpoint.exists():  # the search's first checkpoint: its SIGTERM handler is in place
        assert time.monotonic() < deadline, "the search job wrote no checkpoint"
        time.sleep(0.05)
    run(["scancel", "--signal=TERM", job], on_cluster, env)
    log = on_cluster / "logs/cluster" / f"{stage}.log"
    while "requeueing job" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    time.sleep(1)
    _release_requeued(env)
    collected = run(["isdarts", "cluster", "collect", "--wait"], on_cluster, env)
    out, _ = repro.communicate(timeout=900)
    assert repro.returncode == 0, out
    text = log.read_text()
    assert "stopped by SIGTERM" in text and "restart 1" in text, text
    assert f"recorded in dvc.lock: {stage}" in collected
    ours, reference = results(on_cluster), results(plain)
    folder = "runs/nb201/isdarts/seed_0/"
    assert len(ours[folder + "history.json"]["epochs"]) == 30
    assert {k: v for k, v in ours.items() if k.startswith(folder)} == {
        k: v for k, v in reference.items() if k.startswith(folder)}
    new = [r for r in _mlflow_runs(on_cluster, stage) if r not in before]
    assert [status for _, status in new] == ["FINISHED"], new  # one run, resumed after the requeue


@pytest.mark.slow
def test_a_transfer_on_several_processes_runs_under_torchrun_started_by_srun(pipelines) -> None:
    _, on_cluster, env = pipelines
    raw = yaml.safe_load((on_cluster / "params.yaml").read_text())
    raw["darts"]["imagenet"]["epochs"] = 2  # out of date again, on two processes of one CPU each (gloo)
    raw["cluster"]["stages"] = {"transfer_imagenet": {"processes_per_node": 2, "cpus": 1}}
    (on_cluster / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    submitted = run(["isdarts", "cluster", "submit", "transfer_imagenet"], on_cluster, env)
    assert submitted.startswith("transfer_imagenet@isdarts-0: job "), submitted
    collected = run(["isdarts", "cluster", "collect", "--wait"], on_cluster, env)
    assert "recorded in dvc.lock: transfer_imagenet@isdarts-0" in collected
    script = (on_cluster / "logs/cluster/transfer_imagenet@isdarts-0.sbatch").read_text()
    assert "torchrun --nnodes=1 --nproc_per_node=2" in script and "#SBATCH --cpus-per-task=2" in script
    metrics = json.loads((on_cluster / "runs/darts/imagenet/isdarts/seed_0/metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs"] == 2


@pytest.mark.slow
def test_a_failed_job_is_named_with_its_log_its_dependants_cancelled_and_nothing_recorded(pipelines) -> None:
    _, on_cluster, env = pipelines
    dvc_yaml = on_cluster / "dvc.yaml"
    spec = yaml.safe_load(dvc_yaml.read_text())
    spec["stages"]["lookup_nb201"]["cmd"] = "python -c 'raise SystemExit(3)'"  # both lookups fail
    dvc_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
    lock_before = (on_cluster / "dvc.lock").read_text()
    submitted = run(["isdarts", "cluster", "submit", "report"], on_cluster, env)
    assert "lookup_nb201@isdarts: job" in submitted and "report: job" in submitted, submitted
    collected = subprocess.run(["isdarts", "cluster", "collect", "--wait"], cwd=on_cluster, env=env,
                               capture_output=True, text=True, timeout=600)
    assert collected.returncode == 1, collected.stdout + collected.stderr
    log = on_cluster / "logs/cluster/lookup_nb201@isdarts.log"
    assert "FAILED (exit 3): lookup_nb201@isdarts (job" in collected.stdout and str(log) in collected.stdout
    assert "LOST (cancelled, killed or an upstream job failed): report" in collected.stdout
    assert "ended with exit 3" in log.read_text()
    lock = yaml.safe_load((on_cluster / "dvc.lock").read_text())["stages"]
    assert lock["lookup_nb201@isdarts"] == yaml.safe_load(lock_before)["stages"]["lookup_nb201@isdarts"]
    assert "lookup_nb201@isdarts" in run(["dvc", "status"], on_cluster, env)
