"""Searches side by side on one CPU: how many threads each should get.

`dvc queue start -j 2`, `scripts/run_study.py --jobs 2` or two shells each start a search, and each torch process
takes as many OpenMP threads as the machine has cores unless OMP_NUM_THREADS says otherwise. With more threads
than cores, OpenMP's barriers wait on threads the kernel has descheduled, and every process slows far more than
by sharing alone. This script starts `jobs` processes at once, each timing the supernet's training step
(scripts/benchmark_search.py's worker: forward, backward, SGD step) with `threads` threads, and prints images/s
per process and for the machine, for each setting given:

    python scripts/benchmark_concurrency.py --settings 1x2,2x2,2x1 --C 8 --N 1 --steps 20

(`JOBSxTHREADS`). Needs only torch, like benchmark_search.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "scripts" / "benchmark_search.py"


def parse_setting(text: str) -> tuple[int, int]:
    try:
        jobs, threads = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--settings: {text!r} is not JOBSxTHREADS (e.g. 2x1)") from None
    if jobs < 1 or threads < 1:
        raise SystemExit(f"--settings: {text!r} needs at least one job and one thread")
    return jobs, threads


def run_together(jobs: int, threads: int, args: argparse.Namespace) -> list[float]:
    """Seconds per training step (median) of each of `jobs` processes started together."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(WORKER), "--worker", "fused", "--space", args.space, "--C", str(args.C),
           "--N", str(args.N), "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", "2",
           "--threads", str(threads), "--iim-steps", "2"]
    procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(jobs)]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a worker failed (exit {proc.returncode}); run its command alone to see why: {cmd}")
        results.append(json.loads(out.strip().splitlines()[-1])["full"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default="1x2,2x2,2x1", help="comma-separated JOBSxTHREADS")
    parser.add_argument("--space", choices=("nb201", "darts"), default="nb201")
    parser.add_argument("--C", type=int, default=8)
    parser.add_argument("--N", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    settings = [parse_setting(text) for text in args.settings.split(",")]
    print(f"{args.space} supernet C={args.C} N={args.N}, batch {args.batch}, 32x32, {os.cpu_count()} cores; "
          f"median of {args.steps} training steps per process")
    print(f"{'jobs x threads':<16}{'img/s per process':>20}{'img/s in all':>15}")
    for jobs, threads in settings:
        seconds = run_together(jobs, threads, args)
        per = [args.batch / s for s in seconds]
        print(f"{f'{jobs} x {threads}':<16}{' / '.join(f'{v:.0f}' for v in per):>20}{sum(per):>15.0f}")


if __name__ == "__main__":
    main()
