"""isdarts.tracking against a real MLflow sqlite store (no mocks): runs, resume, failure tolerance, paths."""

from __future__ import annotations

import json
import math
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from isdarts.tracking import (
    Tracker,
    TrackingWarning,
    disable_telemetry,
    flatten_params,
    project_root,
    resolve_tracking_uri,
    standard_tags,
)


def _git(cwd: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module: MLflow's first schema migration takes seconds."""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{db}"


@pytest.fixture(scope="module")
def client(store: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=store)


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_run_lands_in_store(store: str, client, tmp_path: Path) -> None:
    tracker = Tracker("roundtrip", tracking_uri=store)
    params = {"search": {"lr": 0.025, "iim": {"batch_size": 64}}, "seed": 3}
    run_id = tracker.start("nb201-isdarts-seed3", params=params, tags={"method": "isdarts", "seed": 3})
    assert run_id is not None and tracker.active
    for step in range(3):
        tracker.log_metrics(
            {"train_loss": 1.0 / (step + 1), "iim/1<-0/none": step * 0.5, "nan": math.nan, "inf": math.inf},
            step=step,
        )
    artifact = tmp_path / "genotype.json"
    artifact.write_text('{"arch": "|nor_conv_3x3~0|"}')
    tracker.log_artifact(artifact)
    tracker.log_dict({"epochs": [1, 2, 3]}, "history.json")
    tracker.set_tags({"arch_str": "|nor_conv_3x3~0|"})
    tracker.end()

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "nb201-isdarts-seed3"
    assert run.data.params == {"search.lr": "0.025", "search.iim.batch_size": "64", "seed": "3"}
    assert run.data.tags["method"] == "isdarts" and run.data.tags["seed"] == "3"
    assert run.data.tags["arch_str"] == "|nor_conv_3x3~0|"
    assert _history(client, run_id, "train_loss") == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    # MLflow rejects "<" in keys; the tracker maps it to "_" instead of losing the batch.
    assert _history(client, run_id, "iim/1_from_0/none") == [(0, 0.0), (1, 0.5), (2, 1.0)]
    experiment = client.get_experiment(client.get_run(run_id).info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs
    # NaN is kept; inf is left out (MLflow would clamp it to 1.8e308, flattening its chart).
    assert all(math.isnan(v) for _, v in _history(client, run_id, "nan"))
    assert _history(client, run_id, "inf") == []
    assert sorted(f.path for f in client.list_artifacts(run_id)) == ["genotype.json", "history.json"]

    # Artifacts sit beside the database, not under the process cwd.
    location = client.get_experiment(run.info.experiment_id).artifact_location
    expected_root = Path(store.removeprefix("sqlite:///")).parent / "mlartifacts" / "roundtrip"
    assert location == expected_root.as_uri()
    saved = expected_root / run_id / "artifacts" / "history.json"
    assert json.loads(saved.read_text()) == {"epochs": [1, 2, 3]}


def test_resume_continues_the_same_run(store: str, client) -> None:
    first = Tracker("resume", tracking_uri=store)
    run_id = first.start("search", params={"seed": 0, "epochs": 4}, tags={"a": "1"})
    first.log_metrics({"acc": 0.1}, step=1)
    first.log_metrics({"acc": 0.2}, step=2)
    first.end("KILLED")
    assert client.get_run(run_id).info.status == "KILLED"

    # Same params again are fine; MLflow params are immutable, so none is re-logged.
    second = Tracker("resume", tracking_uri=store)
    assert second.start("search", params={"seed": 0, "epochs": 4}, resume_run_id=run_id) == run_id
    assert client.get_run(run_id).info.status == "RUNNING"
    second.log_metrics({"acc": 0.3}, step=3)
    # An abandoned run (process killed, status left RUNNING) resumes the same way.
    third = Tracker("resume", tracking_uri=store)
    assert third.start("search", resume_run_id=run_id) == run_id
    third.log_metrics({"acc": 0.4}, step=4)
    third.end()

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["isdarts.resume_count"] == "2"
    assert _history(client, run_id, "acc") == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_unfinished_run_of_the_same_key_is_adopted_not_duplicated(store: str, client) -> None:
    """A process killed before its first checkpoint leaves its run RUNNING with no id saved anywhere; the
    re-run finds it by its key and continues it, and an older orphan of the key is closed as KILLED."""
    experiment_id = client.get_experiment_by_name("adopt") or client.create_experiment("adopt")
    experiment_id = getattr(experiment_id, "experiment_id", experiment_id)
    orphans = []
    for _ in range(2):  # runs left RUNNING by kills before any checkpoint (start times order them)
        orphans.append(client.create_run(experiment_id, run_name="search", tags={"isdarts.run_key": "k1"}).info.run_id)
        time.sleep(0.01)
    other_key = Tracker("adopt", tracking_uri=store).start("search", params={"seed": 1}, run_key="k2")

    rerun = Tracker("adopt", tracking_uri=store)
    run_id = rerun.start("search", params={"seed": 0}, run_key="k1")
    assert run_id == orphans[1]  # the newest unfinished run of the key is continued
    rerun.end()
    assert client.get_run(orphans[0]).info.status == "KILLED"
    assert client.get_run(run_id).info.status == "FINISHED"
    assert client.get_run(run_id).data.tags["isdarts.run_key"] == "k1"
    assert client.get_run(other_key).info.status == "RUNNING"  # another key's run is left alone

    # A finished run is never adopted: the next training of the key is a new run.
    again = Tracker("adopt", tracking_uri=store)
    assert again.start("search", params={"seed": 0}, run_key="k1") not in orphans
    again.end()


def test_resume_of_unknown_run_starts_a_new_one(store: str) -> None:
    tracker = Tracker("resume-missing", tracking_uri=store)
    with pytest.warns(TrackingWarning, match="cannot resume"):
        run_id = tracker.start("search", resume_run_id="0" * 32)
    assert run_id is not None and run_id != "0" * 32
    tracker.end()


def test_context_manager_sets_status(store: str, client) -> None:
    with pytest.raises(RuntimeError), Tracker("ctx", tracking_uri=store) as tracker:
        failed = tracker.start("boom")
        raise RuntimeError("search crashed")
    with pytest.raises(KeyboardInterrupt), Tracker("ctx", tracking_uri=store) as tracker:
        killed = tracker.start("ctrl-c")
        raise KeyboardInterrupt
    with Tracker("ctx", tracking_uri=store) as tracker:
        finished = tracker.start("ok")
    statuses = [client.get_run(r).info.status for r in (failed, killed, finished)]
    assert statuses == ["FAILED", "KILLED", "FINISHED"]


def _exercise(tracker: Tracker, tmp_path: Path) -> None:
    """Every public call; none may raise."""
    artifact = tmp_path / "a.txt"
    artifact.write_text("x")
    tracker.log_metrics({"loss": 1.0}, step=0)
    tracker.set_tags({"k": "v"})
    tracker.log_artifact(artifact)
    tracker.log_dict({"k": 1}, "d.json")
    tracker.end("FAILED")


def test_unusable_store_warns_once_then_is_a_no_op(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the store's folder should be")
    uri = f"sqlite:///{blocker}/sub/mlflow.db"
    tracker = Tracker("broken", tracking_uri=uri)
    with pytest.warns(TrackingWarning) as record:
        assert tracker.start("search", params={"seed": 0}) is None
    assert len(record) == 1
    message = str(record[0].message)
    assert "tracking disabled" in message and uri in message
    assert not tracker.enabled
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any further warning or exception fails the test
        _exercise(tracker, tmp_path)
        assert tracker.start("again") is None


def test_error_mid_run_disables_tracking(store: str, client, tmp_path: Path) -> None:
    tracker = Tracker("mid-run", tracking_uri=store)
    run_id = tracker.start("search")
    tracker.log_metrics({"loss": 1.0}, step=0)
    # MLflow itself rejects a key that is not a normalised path.
    with pytest.warns(TrackingWarning, match="tracking disabled"):
        tracker.log_metrics({"a//b": 1.0}, step=1)
    assert not tracker.active
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _exercise(tracker, tmp_path)
    assert client.get_run(run_id).info.status == "FAILED"
    assert _history(client, run_id, "loss") == [(0, 1.0)]


def test_non_numeric_metrics_are_skipped(store: str, client) -> None:
    tracker = Tracker("skip", tracking_uri=store)
    run_id = tracker.start("search")
    with pytest.warns(TrackingWarning, match="non-numeric"):
        tracker.log_metrics({"ok": 2.0, "none": None, "text": "x"}, step=0)
    assert tracker.active
    tracker.end()
    assert set(client.get_run(run_id).data.metrics) == {"ok"}


def test_disabled_tracker_never_touches_mlflow(tmp_path: Path) -> None:
    tracker = Tracker("off", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", enabled=False)
    assert tracker.start("search") is None
    _exercise(tracker, tmp_path)
    assert not (tmp_path / "mlflow.db").exists()


def test_flatten_params() -> None:
    assert flatten_params({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": None}) == {
        "a.b.c": "1",
        "a.d": "[1, 2]",
        "e": "None",
    }


def test_project_root_from_dvc_root(tmp_path: Path) -> None:
    assert project_root({"DVC_ROOT": str(tmp_path)}, cwd="/") == tmp_path


@pytest.mark.parametrize("inside", ["tmpab12cd", "tmpab12cd/sub", "standalone/tmpab12cd", "celery/x"])
def test_project_root_leaves_dvc_exp_temp_copy(tmp_path: Path, inside: str) -> None:
    temp_copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / inside
    assert project_root({"DVC_ROOT": str(temp_copy)}) == tmp_path / "repo"


def test_project_root_git_toplevel(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "a" / "b").mkdir(parents=True)
    _git(repo, "init", "-q")
    assert project_root({}, cwd=repo / "a" / "b").resolve() == repo.resolve()
    # A temp copy is its own git checkout; it still maps to the original repository.
    temp_copy = repo / ".dvc" / "tmp" / "exps" / "tmpxyz"
    temp_copy.mkdir(parents=True)
    _git(temp_copy, "init", "-q")
    assert project_root({}, cwd=temp_copy).resolve() == repo.resolve()


def test_project_root_falls_back_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # don't find a repo above tmp_path
    assert project_root({}, cwd=tmp_path) == tmp_path


def test_resolve_tracking_uri(tmp_path: Path) -> None:
    assert resolve_tracking_uri({"MLFLOW_TRACKING_URI": "http://mlflow:5000", "DVC_ROOT": "/x"}) == (
        "http://mlflow:5000"
    )
    assert resolve_tracking_uri({"DVC_ROOT": str(tmp_path)}) == f"sqlite:///{tmp_path}/mlflow.db"
    temp_copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmp1"
    assert resolve_tracking_uri({"DVC_ROOT": str(temp_copy)}) == f"sqlite:///{tmp_path}/mlflow.db"


def test_standard_tags(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "f.txt").write_text("x")
    _git(tmp_path, "add", "f.txt")
    _git(tmp_path, "commit", "-q", "-m", "init")
    head = _git(tmp_path, "rev-parse", "HEAD")
    env = {"DVC_EXP_NAME": "calm-cove", "DVC_STAGE": "search_nb201@0"}
    tags = standard_tags(
        seed=0, space="nb201", method="isdarts", stage=None, profile="smoke", cwd=tmp_path, env=env
    )
    assert tags == {
        "seed": "0",
        "space": "nb201",
        "method": "isdarts",
        "profile": "smoke",
        "dvc.stage": "search_nb201@0",
        "dvc.exp_name": "calm-cove",
        "git.commit": head,
        "mlflow.source.git.commit": head,
        "git.dirty": "false",
    }
    (tmp_path / "f.txt").write_text("changed")
    dirty = standard_tags(seed=1, space="darts", method="darts", stage="s", profile="p", cwd=tmp_path, env={})
    assert dirty["git.dirty"] == "true" and dirty["dvc.stage"] == "s" and "dvc.exp_name" not in dirty


def test_disable_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DVC_NO_ANALYTICS", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
        monkeypatch.delenv(name, raising=False)  # restored after the test
    disable_telemetry()
    from mlflow.environment_variables import MLFLOW_DISABLE_TELEMETRY
    from mlflow.telemetry import get_telemetry_client

    assert MLFLOW_DISABLE_TELEMETRY.get() is True
    assert get_telemetry_client() is None

    from dvc.analytics import is_enabled

    monkeypatch.delenv("DVC_TEST", raising=False)
    assert is_enabled() is False


def test_store_lost_mid_run_keeps_what_it_missed_and_replays_it_into_the_same_run(tmp_path: Path) -> None:
    """The store becomes read-only mid-run (its file moved away under the open connection): the run goes on,
    the missed metrics and the run's end are kept in a backlog file, and replaying it once the store is back
    puts them into the same run."""
    from mlflow import MlflowClient

    from isdarts.tracking_backlog import replay

    db, away = tmp_path / "mlflow.db", tmp_path / "moved.db"
    tracker = Tracker("outage", tracking_uri=f"sqlite:///{db}")
    run_id = tracker.start("search", params={"seed": 0}, run_key="k")
    tracker.log_metrics({"acc": 0.1}, step=1)
    db.rename(away)
    db.mkdir()  # a folder where the database was: every later write fails
    with pytest.warns(TrackingWarning, match="kept in a file"):
        tracker.log_metrics({"acc": 0.2}, step=2)
    tracker.log_metrics({"acc": 0.3, "loss": 1.5}, step=3)
    tracker.set_tags({"genotype": "|skip~0|"})
    tracker.end()
    backlog = tracker.backlog.write(tmp_path / "mlflow_backlog.json")

    db.rmdir()
    away.rename(db)  # the store answers again
    assert replay(backlog) == run_id
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["genotype"] == "|skip~0|"
    assert _history(client, run_id, "acc") == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert _history(client, run_id, "loss") == [(3, 1.5)]
    assert not backlog.exists()


def test_store_unreachable_from_the_start_is_replayed_as_a_new_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from isdarts.tracking_backlog import replay

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    tracker = Tracker("offline", tracking_uri=f"sqlite:///{blocker}/mlflow.db")
    with pytest.warns(TrackingWarning, match="disabled"):
        assert tracker.start("search", params={"search": {"lr": 0.025}}, tags={"seed": 0}, run_key="k") is None
    tracker.log_metrics({"acc": 0.5}, step=1)
    tracker.end("FINISHED")
    backlog = tracker.backlog.write(tmp_path / "backlog.json")

    good = f"sqlite:///{tmp_path / 'good.db'}"
    run_id = replay(backlog, tracking_uri=good)
    run = MlflowClient(tracking_uri=good).get_run(run_id)
    assert run.info.run_name == "search" and run.info.status == "FINISHED"
    assert run.data.params == {"search.lr": "0.025"} and run.data.tags["seed"] == "0"
    assert run.data.tags["isdarts.run_key"] == "k" and run.data.metrics == {"acc": 0.5}


def test_a_deleted_experiment_made_before_the_kind_tag_is_restored_and_tagged(store: str, client) -> None:
    experiment_id = client.create_experiment("deleted-untagged")
    client.delete_experiment(experiment_id)
    tracker = Tracker("deleted-untagged", tracking_uri=store)
    assert tracker.start("search") is not None
    tracker.end()
    experiment = client.get_experiment(experiment_id)
    assert experiment.lifecycle_stage == "active"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
