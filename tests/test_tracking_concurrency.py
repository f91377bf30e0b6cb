"""Several processes on one SQLite MLflow store (queued DVC experiments, searches side by side): a lock held by
another writer is waited out, and processes opening a new store together all keep their runs. Real SQLite and
MLflow throughout; the lock is a real `BEGIN EXCLUSIVE` from another connection."""

from __future__ import annotations

import importlib.util
import sqlite3
import threading
import time
import warnings
from pathlib import Path

import pytest

from isdarts.tracking import Tracker, TrackingWarning, call_with_lock_retry, is_transient_store_error

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_SQLITE_BUSY_WAIT_S = 20  # PRAGMA busy_timeout = 20000 in mlflow/store/db/utils.py


def _hold_exclusive_lock(db: Path, seconds: float) -> threading.Thread:
    """Another writer: takes the database's write lock and keeps it `seconds`, longer than SQLite's busy wait."""
    locked = threading.Event()

    def hold() -> None:
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        con.execute("COMMIT")
        con.close()

    thread = threading.Thread(target=hold)
    thread.start()
    locked.wait()
    return thread


def _metric_values(db: Path, run_id: str) -> list[float]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("select value from metrics where run_uuid = ? and key = 'train_loss'", (run_id,)).fetchall()
    finally:
        con.close()
    return [v for (v,) in rows]


def test_a_write_lock_longer_than_sqlites_busy_wait_is_waited_out(tmp_path: Path) -> None:
    """Two trackers log while another writer holds the lock past MLflow's 20 s SQLite busy wait: the one
    that retries keeps its values; the one that does not (isdarts before the retry) loses tracking."""
    db = tmp_path / "mlflow.db"
    trackers = {
        "retried": Tracker("locked", tracking_uri=f"sqlite:///{db}"),
        "not retried": Tracker("locked", tracking_uri=f"sqlite:///{db}", lock_retry_delays=()),
    }
    run_ids = {name: tracker.start(name, params={"lr": 0.1}) for name, tracker in trackers.items()}
    assert None not in run_ids.values()
    failures: dict[str, list[str]] = {}

    def log(name: str) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trackers[name].log_metrics({"train_loss": 0.5}, step=1)
            trackers[name].log_metrics({"train_loss": 0.25}, step=2)
            trackers[name].end()
        failures[name] = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]

    holder = _hold_exclusive_lock(db, seconds=MLFLOW_SQLITE_BUSY_WAIT_S + 3)
    loggers = [threading.Thread(target=log, args=(name,)) for name in trackers]
    for thread in loggers:
        thread.start()
    for thread in [holder, *loggers]:
        thread.join()
    assert failures["retried"] == [] and trackers["retried"].backlog is None
    assert sorted(_metric_values(db, run_ids["retried"])) == [0.25, 0.5]
    assert len(failures["not retried"]) == 1 and "database is locked" in failures["not retried"][0]
    assert _metric_values(db, run_ids["not retried"]) == [] and trackers["not retried"].backlog is not None


def test_processes_opening_a_new_store_together_all_keep_their_runs() -> None:
    spec = importlib.util.spec_from_file_location("mlflow_concurrency", ROOT / "scripts/mlflow_concurrency.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    result = script.run_mode(processes=3, epochs=4, metrics=10, mode="new", store="new")
    assert result["runs finished"] == 3 and result["trainings that lost tracking"] == 0
    assert result["workers crashed"] == 0 and result["metric values kept %"] == 100


def _locked_error() -> Exception:
    """What MLflow raises for a lock: its own exception, SQLAlchemy's and sqlite3's below it."""
    try:
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.OperationalError as exc:
            raise RuntimeError("(raised as a result of a query)") from exc
    except RuntimeError as exc:
        return exc


def test_transient_errors_are_told_from_real_ones() -> None:
    assert is_transient_store_error(_locked_error())
    assert is_transient_store_error(sqlite3.OperationalError("table _alembic_tmp_runs already exists"))
    assert not is_transient_store_error(sqlite3.OperationalError("attempt to write a readonly database"))
    assert not is_transient_store_error(ValueError("Experiment(name=x) already exists"))
    assert not is_transient_store_error(OSError("disk I/O error"))


def test_retry_backs_off_then_gives_up_and_never_retries_a_real_error() -> None:
    pauses: list[float] = []
    calls = {"n": 0}

    def locked_twice() -> str:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise _locked_error()
        return "ok"

    assert call_with_lock_retry(locked_twice, delays=(1.0, 2.0, 4.0), sleep=pauses.append) == "ok"
    assert len(pauses) == 2 and 0.5 <= pauses[0] <= 1.5 and 1.0 <= pauses[1] <= 3.0  # jittered doubling

    def always_locked() -> None:
        raise _locked_error()

    pauses.clear()
    with pytest.raises(RuntimeError):
        call_with_lock_retry(always_locked, delays=(1.0, 2.0), sleep=pauses.append)
    assert len(pauses) == 2

    def readonly() -> None:
        calls["n"] += 1
        raise sqlite3.OperationalError("attempt to write a readonly database")

    calls["n"], pauses = 0, []
    with pytest.raises(sqlite3.OperationalError):
        call_with_lock_retry(readonly, delays=(1.0, 2.0), sleep=pauses.append)
    assert calls["n"] == 1 and pauses == []
