"""Run the collapse study: every (method, seed) NB201 search of profiles/study.yaml, N at a time, resumable.

    python scripts/run_study.py                    # every run of the profile, 2 at a time, one thread each
    python scripts/run_study.py --methods darts1 --seeds 0 --jobs 1
    dvc repro report                               # then: reports/study.md, reports/figures/study_nb201_collapse.png

Each search is `isdarts search` in a process of its own (tracked in MLflow, stage tag `study`), with its log
in logs/study/<method>-seed<s>.log, its outputs in runs/study/nb201/<method>/seed_<s>/ and its checkpoints
in checkpoints/study/. A run whose history.json exists is done and skipped; a killed one resumes from its
last checkpoint when this script runs again. The searches read data/prepared (`dvc repro prepare_data`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isdarts.config import load_params  # noqa: E402 (after the path set-up, so a plain checkout works)
from isdarts.errors import ConfigError  # noqa: E402

STUDY_RUNS = Path("runs/study")
STUDY_CHECKPOINTS = Path("checkpoints/study")
STUDY_LOGS = Path("logs/study")


def run_one(
    params_file: Path, method: str, seed: int, threads: int, root: Path, folders: tuple[Path, Path, Path] = (
        STUDY_RUNS, STUDY_CHECKPOINTS, STUDY_LOGS)
) -> tuple[str, int, float]:
    """One search in its own process; (name, exit code, seconds). `folders`: runs, checkpoints, logs."""
    runs, checkpoints, logs = folders
    name = f"{method}-seed{seed}"
    out = root / runs / "nb201" / method / f"seed_{seed}"
    if (out / "history.json").is_file():
        print(f"{name}: done already ({out}/history.json)", flush=True)
        return name, 0, 0.0
    log = root / logs / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "isdarts.cli", "--params", str(params_file), "search", "--space", "nb201",
           "--method", method, "--seed", str(seed), "--stage", "study", "--no-progress", "--out", str(out),
           "--checkpoints", str(root / checkpoints / "nb201" / method / f"seed_{seed}")]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    print(f"{name}: started ({threads} thread{'s' if threads > 1 else ''}), log {log}", flush=True)
    start = time.monotonic()
    with log.open("a", encoding="utf-8") as sink:
        code = subprocess.run(cmd, cwd=root, env=env, stdout=sink, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.monotonic() - start
    print(f"{name}: {'finished' if code == 0 else f'FAILED (exit {code}, see {log})'} after {seconds / 60:.1f} min",
          flush=True)
    return name, code, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "profiles" / "study.yaml")
    parser.add_argument("--methods", nargs="+", default=None, help="default: the profile's nb201.methods")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the profile's nb201.seeds")
    parser.add_argument("--jobs", type=int, default=2, help="searches at a time (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="threads per search (default: cores / jobs)")
    parser.add_argument("--root", type=Path, default=ROOT, help="project folder the runs go into")
    parser.add_argument("--runs", type=Path, default=STUDY_RUNS, help=f"outputs, under --root (default {STUDY_RUNS})")
    parser.add_argument("--checkpoints", type=Path, default=STUDY_CHECKPOINTS,
                        help=f"checkpoints, under --root (default {STUDY_CHECKPOINTS})")
    parser.add_argument("--logs", type=Path, default=STUDY_LOGS, help=f"logs, under --root (default {STUDY_LOGS})")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not (args.root / "data" / "prepared" / "manifest.json").is_file():
        print(f"error: {args.root}/data/prepared is missing; run `dvc repro prepare_data` first", file=sys.stderr)
        return 2
    methods = args.methods or list(params.nb201.methods)
    unknown = [m for m in methods if m not in params.nb201.methods]
    if unknown:
        print(f"error: {args.params} has no nb201 section for {', '.join(unknown)}; its methods are "
              f"{', '.join(params.nb201.methods)}", file=sys.stderr)
        return 2
    seeds = args.seeds if args.seeds is not None else list(params.nb201.seeds)
    jobs = max(1, args.jobs)
    threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
    runs = [(m, s) for s in seeds for m in methods]
    print(f"collapse study: {len(runs)} searches ({', '.join(methods)} x seeds {seeds}), {jobs} at a time, "
          f"params {args.params}", flush=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        folders = (args.runs, args.checkpoints, args.logs)
        results = list(pool.map(lambda run: run_one(args.params, run[0], run[1], threads, args.root, folders), runs))
    failed = [name for name, code, _ in results if code != 0]
    print(f"collapse study: {len(results) - len(failed)}/{len(results)} searches done"
          + (f"; failed: {', '.join(failed)}" if failed else "; now `dvc repro report`"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
