"""Many trainings logging to one MLflow store at once: how many runs and metric values survive.

Two queued DVC experiments (`dvc queue start -j 2`), or searches run side by side, write to the one
mlflow.db at the repository root. SQLite lets one writer in at a time; a writer that waits past its busy
timeout fails with "database is locked"; and processes that open a new store together break each other's
table creation. Before isdarts serialised the store's set-up and retried locked calls, the tracker gave
up on the store for the rest of such a run. This script starts --processes trainings together on a fresh store, each
logging --epochs epochs of --metrics metrics (as fast as it can: far more write pressure than a real
search, which logs once every few seconds), then counts what the store holds. It does so twice in one run,
the old way and the new, and prints both side by side.

    python scripts/mlflow_concurrency.py                      # 8 processes x 60 epochs x 80 metrics
    python scripts/mlflow_concurrency.py --processes 2 --epochs 200

With --tracking-uri the trainings log to that store instead, e.g. a cluster's PostgreSQL-backed server
(`isdarts tracking-server`), each run of the script in an experiment of its own, once, the new way:

    python scripts/mlflow_concurrency.py --tracking-uri http://mlflow-host:5000 --processes 16
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One training: a Tracker run with params and tags, `epochs` metric batches, the end. It imports mlflow, then
# waits for the common start time, so that all processes open the store together and log side by side.
WORKER = r"""
import contextlib, json, sys, time, warnings
import isdarts.tracking as tracking
tracking.disable_telemetry()  # before mlflow is imported
import mlflow.entities
uri, index, epochs, n_metrics, start_at, mode, experiment = sys.argv[1:8]
if mode == "old":  # what isdarts did before: every process set the store up at once, and no retry
    tracking._store_setup_lock = lambda uri: contextlib.nullcontext()
tracker = tracking.Tracker(experiment, tracking_uri=uri, lock_retry_delays=() if mode == "old" else None)
time.sleep(max(0.0, float(start_at) - time.time()))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    tracker.start(f"run-{index}", params={"search": {"epochs": int(epochs), "lr": 0.025}},
                  tags={"seed": index, "method": "darts1"}, run_key=f"key-{index}")
    for epoch in range(1, int(epochs) + 1):
        tracker.log_metrics({f"iim/edge_{i}": epoch * 0.01 + i for i in range(int(n_metrics))}, step=epoch)
    tracker.end()
failures = [str(w.message) for w in caught if issubclass(w.category, tracking.TrackingWarning)]
print(json.dumps({"failures": failures}))
"""


def set_up_store(uri: str) -> None:
    """Create the store's tables, as the first `dvc repro` of a clone does before any experiment is queued."""
    import logging

    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its table-creation lines
    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


def run_workers(
    uri: str, processes: int, epochs: int, metrics: int, mode: str, experiment: str, lead_in_s: float | None = None
) -> dict[str, float]:
    """`processes` trainings logging to `uri` together (tracking the "old" or the "new" way); how many crashed
    or lost tracking, and the wall time from their common start."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # Python and mlflow take a few seconds to import; every process waits for this moment, then starts.
    start_at = time.time() + (8 + 0.5 * processes if lead_in_s is None else lead_in_s)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, uri, str(i), str(epochs), str(metrics), str(start_at), mode, experiment],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(processes)
    ]
    outputs = [p.communicate(timeout=1800) for p in procs]
    wall = time.time() - start_at
    warned = 0
    for (out, err), proc in zip(outputs, procs, strict=True):
        if proc.returncode != 0:
            print(f"  a worker exited {proc.returncode}: {err.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        warned += bool(json.loads(out.strip().splitlines()[-1])["failures"])
    return {"trainings that lost tracking": warned, "workers crashed": sum(p.returncode != 0 for p in procs),
            "wall s": wall}


def _summary(finished: int, values: int, processes: int, epochs: int, metrics: int, workers: dict) -> dict:
    return {
        "runs finished": finished, "runs expected": processes,
        "trainings that lost tracking": workers["trainings that lost tracking"],
        "workers crashed": workers["workers crashed"],
        "metric values kept %": 100 * values / (processes * epochs * metrics), "wall s": workers["wall s"],
    }


def run_mode(processes: int, epochs: int, metrics: int, mode: str, store: str) -> dict[str, float]:
    """All processes on one SQLite store ("new", or "set up" beforehand), tracking the "old" or the "new" way;
    what the store kept."""
    with tempfile.TemporaryDirectory(prefix="mlflow-concurrency-") as tmp:
        db = Path(tmp) / "mlflow.db"
        uri = f"sqlite:///{db}"
        if store == "set up":
            set_up_store(uri)
        workers = run_workers(uri, processes, epochs, metrics, mode, "concurrency")
        finished, values = 0, 0
        if db.exists():
            con = sqlite3.connect(db)
            try:
                finished = con.execute("select count(*) from runs where status = 'FINISHED'").fetchone()[0]
                values = con.execute("select count(*) from metrics").fetchone()[0]
            except sqlite3.OperationalError:  # the tables were never made
                pass
            con.close()
    return _summary(finished, values, processes, epochs, metrics, workers)


def run_on_store(
    uri: str, processes: int, epochs: int, metrics: int, lead_in_s: float | None = None
) -> dict[str, float | str]:
    """All processes on the store at `uri` (a tracking server, say), in a new experiment; what it kept, read
    back through MLflow's API (so any store will do), and the experiment's name."""
    from mlflow import MlflowClient

    experiment = f"concurrency-{uuid.uuid4().hex[:8]}"
    workers = run_workers(uri, processes, epochs, metrics, "new", experiment, lead_in_s)
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id]) if found else []
    finished = sum(run.info.status == "FINISHED" for run in runs)
    # Every value of every key: a run's summary holds only each key's latest one.
    values = sum(len(client.get_metric_history(run.info.run_id, key)) for run in runs for key in run.data.metrics)
    return {**_summary(finished, values, processes, epochs, metrics, workers), "experiment": experiment}


def _perfect(result: dict, processes: int) -> bool:
    return (result["runs finished"] == processes and not result["trainings that lost tracking"]
            and not result["workers crashed"] and result["metric values kept %"] == 100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--metrics", type=int, default=80, help="metrics per epoch (an NB201 search logs ~70)")
    parser.add_argument("--tracking-uri", default=None,
                        help="log to this store (e.g. http://host:5000) instead of fresh SQLite files")
    args = parser.parse_args(argv)
    if args.tracking_uri:
        print(f"{args.processes} processes x {args.epochs} epochs x {args.metrics} metrics on {args.tracking_uri}")
        result = run_on_store(args.tracking_uri, args.processes, args.epochs, args.metrics)
        for key, value in result.items():
            print(f"{key:32s}{value:>10.1f}" if isinstance(value, float) else f"{key:32s}{value!s:>10s}")
        ok = _perfect(result, args.processes)
        print("every run and every value was kept" if ok else "RUNS OR VALUES WERE LOST")
        return 0 if ok else 1
    print(f"{args.processes} processes x {args.epochs} epochs x {args.metrics} metrics on one SQLite store")
    ok = True
    for store in ("new", "set up"):
        results = {mode: run_mode(args.processes, args.epochs, args.metrics, mode, store) for mode in ("old", "new")}
        print(f"\n{'store ' + store:32s}{'old':>10s}{'new':>10s}")
        for key in results["old"]:
            old, new = results["old"][key], results["new"][key]
            fmt = (lambda v: f"{v:.1f}") if isinstance(old, float) else str
            print(f"{key:32s}{fmt(old):>10s}{fmt(new):>10s}")
        ok &= _perfect(results["new"], args.processes)
    print("\nnew: every run and every value was kept" if ok else "\nnew: RUNS OR VALUES WERE LOST")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
