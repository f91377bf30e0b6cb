"""Per-stage wall time of the test suite's smoke pipeline, this checkout against a baseline commit.

Builds the scratch project of tests/test_pipeline.py (smoke profile, fake CIFAR) once per tree and round,
runs its first `dvc repro`, and times each stage from the moment DVC announces it to the next announcement.
Stages that train nothing (prepare, lookups, ImageNet data, report) are mostly process start-up, so their
sum shows what import-time changes save; the training stages are summed apart. Old and new alternate.

    python scripts/benchmark_stage_startup.py --baseline 8e2bcbd --rounds 2
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from benchmark_search import baseline_tree  # noqa: E402  (scripts/ is this script's own folder)

LIGHT = {"prepare_data", "lookup_nb201", "imagenet_data", "report"}  # stage names before any "@item"


def timed_repro(tree: Path, scratch: Path) -> dict[str, float]:
    """Stage name -> seconds for one first `dvc repro` of the smoke project, with `tree`'s isdarts."""
    import test_pipeline

    os.environ["PYTHONPATH"] = str(tree)  # the project fixture hands this environment to DVC's stages
    scratch.mkdir(parents=True)
    repo, env = test_pipeline.project.__wrapped__(scratch)
    times, stage, last = {}, None, time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    for line in proc.stdout:
        if match := re.match(r"Running stage '(.+)':", line):
            now = time.perf_counter()
            if stage is not None:
                times[stage] = now - last
            stage, last = match.group(1), now
    if proc.wait() != 0:
        raise SystemExit(f"dvc repro failed in {repo}")
    times[stage] = time.perf_counter() - last
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD~1", help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = baseline_tree(args.baseline, Path(tmp) / "old")
        print(f"{'tree':10} {'round':>5} {'light stages s':>15} {'training stages s':>18} {'total s':>8}")
        for r in range(args.rounds):
            for name, tree in (("baseline", old), ("this", ROOT)):
                times = timed_repro(tree, Path(tmp) / f"{name}-{r}")
                light = sum(t for s, t in times.items() if s.split("@")[0] in LIGHT)
                total = sum(times.values())
                print(f"{name:10} {r:>5} {light:>15.1f} {total - light:>18.1f} {total:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
