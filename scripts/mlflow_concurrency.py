"""Many trainings logging to one SQLite MLflow store at once: how many runs and metric values survive.

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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One training: a Tracker run with params and tags, `epochs` metric batches, a genotype artifact, the end.
# It waits for the common start time so that all processes open the new store together.
WORKER = r"""
import contextlib, json, sys, time, warnings
import isdarts.tracking as tracking
uri, index, epochs, n_metrics, start_at, mode = sys.argv[1:7]
if mode == "old":  # what isdarts did before: every process set the store up at once, and no retry
    tracking._store_setup_lock = lambda uri: contextlib.nullcontext()
tracker = tracking.Tracker("concurrency", tracking_uri=uri, lock_retry_delays=() if mode == "old" else None)
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


def run_mode(processes: int, epochs: int, metrics: int, mode: str, store: str) -> dict[str, float]:
    """All processes on one store ("new", or "set up" beforehand), tracking the "old" or the "new" way;
    what the store kept."""
    with tempfile.TemporaryDirectory(prefix="mlflow-concurrency-") as tmp:
        db = Path(tmp) / "mlflow.db"
        uri = f"sqlite:///{db}"
        if store == "set up":
            set_up_store(uri)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        # Python and mlflow take a few seconds to import; every process waits for this moment, then starts.
        start_at = time.time() + 8 + 0.5 * processes
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, uri, str(i), str(epochs), str(metrics), str(start_at), mode],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for i in range(processes)
        ]
        outputs = [p.communicate(timeout=1800) for p in procs]
        wall = time.time() - start_at
        failed_processes = sum(p.returncode != 0 for p in procs)
        warned = 0
        for (out, err), proc in zip(outputs, procs, strict=True):
            if proc.returncode != 0:
                print(f"  a worker exited {proc.returncode}: {err.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            warned += bool(json.loads(out.strip().splitlines()[-1])["failures"])
        finished, values = 0, 0
        if db.exists():
            con = sqlite3.connect(db)
            try:
                finished = con.execute("select count(*) from runs where status = 'FINISHED'").fetchone()[0]
                values = con.execute("select count(*) from metrics").fetchone()[0]
            except sqlite3.OperationalError:  # the tables were never made
                pass
            con.close()
    return {
        "runs finished": finished, "runs expected": processes, "trainings that lost tracking": warned,
        "workers crashed": failed_processes, "metric values kept %": 100 * values / (processes * epochs * metrics),
        "wall s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--metrics", type=int, default=80, help="metrics per epoch (an NB201 search logs ~70)")
    args = parser.parse_args(argv)
    print(f"{args.processes} processes x {args.epochs} epochs x {args.metrics} metrics on one SQLite store")
    ok = True
    for store in ("new", "set up"):
        results = {mode: run_mode(args.processes, args.epochs, args.metrics, mode, store) for mode in ("old", "new")}
        print(f"\n{'store ' + store:32s}{'old':>10s}{'new':>10s}")
        for key in results["old"]:
            old, new = results["old"][key], results["new"][key]
            fmt = (lambda v: f"{v:.1f}") if isinstance(old, float) else str
            print(f"{key:32s}{fmt(old):>10s}{fmt(new):>10s}")
        new = results["new"]
        ok &= new["runs finished"] == args.processes and not new["trainings that lost tracking"]
        ok &= not new["workers crashed"] and new["metric values kept %"] == 100
    print("\nnew: every run and every value was kept" if ok else "\nnew: RUNS OR VALUES WERE LOST")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
