"""The smoke pipeline under `dvc repro` and on a one-node SLURM cluster (`isdarts cluster`), side by side.

    python scripts/benchmark_cluster.py                 # starts its own local cluster (root, slurm-wlm, munge)
    python scripts/benchmark_cluster.py --jobs-cpus 2   # each job takes 2 CPUs (one job at a time on 2 cores)

Builds the pipeline test's smoke project twice (tests/test_pipeline.py: fake CIFAR-format data, tiny
supernets, both spaces, retraining, the ImageNet transfer, the sweep), runs one copy with `dvc repro` and the
other with `isdarts cluster submit` + `collect --wait`, one after the other, each stage on --jobs-cpus threads,
and prints both wall times, whether `dvc status` is clean after each, and whether every result (JSON outputs
without their timings, the report tables without their cost column) is equal.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]

import local_slurm  # noqa: E402 (scripts/ and tests/ are no packages)
import yaml  # noqa: E402
from fault_check import TIMING_KEYS  # noqa: E402

TABLES = ("table1", "table_a1", "table2", "table3", "table_a2", "study")


def make_project(base: Path, nb201_methods: list[str] | None = None, rates: list[str] | None = None,
                 jobs_cpus: int | None = 1, robust: bool = True) -> tuple[Path, dict[str, str]]:
    """The pipeline test's smoke project in a fresh git + DVC repository; its path and the env to run it with.
    `jobs_cpus`: threads per stage (under DVC and as SLURM jobs alike); None leaves torch's default. `robust`:
    False runs no robust space (their stages are the DARTS-space ones with other params)."""
    from fakes import write_fake_cifar10
    from test_pipeline import smoke_params
    from test_svhn import write_fake_svhn

    repo = base / "repo"
    repo.mkdir(parents=True)
    for name in ("dvc.yaml", "stages", "isdarts", ".gitignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    fake = base / "fake-cifar"
    write_fake_cifar10(fake, n_per_batch=20, n_test=30, seed=0)
    write_fake_svhn(base / "fake-svhn")
    raw = smoke_params(fake, base / "fake-svhn")
    if not robust:
        raw["robust"].update(spaces=[], extra_datasets=[])
    if nb201_methods:
        raw["nb201"]["methods"] = nb201_methods
    if rates:
        raw["darts"]["sweep"]["rates"] = rates
    if jobs_cpus is not None:
        raw["cluster"] = {"defaults": {"cpus": jobs_cpus, "mem": "1G", "time": "00:30:00"}}
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    if jobs_cpus is not None:  # the same thread count under both: a stage's numbers depend on it
        env["OMP_NUM_THREADS"] = str(jobs_cpus)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "smoke"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    return repo, env


def without_timing(doc: object) -> object:
    """`doc` without its wall-clock fields (and their means, e.g. search_hours_mean)."""
    if isinstance(doc, dict):
        return {k: without_timing(v) for k, v in doc.items() if not k.startswith(tuple(TIMING_KEYS))}
    if isinstance(doc, list):
        return [without_timing(v) for v in doc]
    return doc


def results(repo: Path) -> dict[str, object]:
    """Every JSON result of the pipeline, timings left out."""
    files = sorted((repo / "runs").rglob("*.json")) + sorted((repo / "results").glob("*.json"))
    return {str(f.relative_to(repo)): without_timing(json.loads(f.read_text())) for f in files}


def table(repo: Path, name: str) -> list[dict[str, str]]:
    """A report table's rows without the cost column (wall-clock hours)."""
    with (repo / "reports" / f"{name}.csv").open() as f:
        return [{k: v for k, v in row.items() if k != "cost"} for row in csv.DictReader(f)]


def differences(a: Path, b: Path) -> list[str]:
    ra, rb = results(a), results(b)
    found = [k for k in sorted(ra.keys() | rb.keys()) if ra.get(k) != rb.get(k)]
    return found + [f"reports/{t}.csv" for t in TABLES if table(a, t) != table(b, t)]


def _timed(cmd: list[str], repo: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def _clean(repo: Path, env: dict[str, str]) -> bool:
    out = subprocess.run(["dvc", "status"], cwd=repo, env=env, capture_output=True, text=True).stdout
    return "up to date" in out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs-cpus", type=int, default=1, help="CPUs (threads) per stage, under both")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="isdarts-cluster-bench-") as tmp:
        base = Path(tmp)
        slurm_env = local_slurm.start(base / "slurm")
        try:
            plain, env = make_project(base / "plain", jobs_cpus=args.jobs_cpus)
            on_cluster, _ = make_project(base / "cluster", jobs_cpus=args.jobs_cpus)
            env = {**env, **slurm_env}
            n_stages = len(yaml.safe_load((plain / "dvc.yaml").read_text())["stages"])
            repro_s = _timed(["dvc", "repro"], plain, env)
            start = time.perf_counter()
            _timed(["isdarts", "cluster", "submit"], on_cluster, env)
            _timed(["isdarts", "cluster", "collect", "--wait"], on_cluster, env)
            cluster_s = time.perf_counter() - start
            jobs = len(json.loads((on_cluster / "logs/cluster/jobs.json").read_text()))
            diff = differences(plain, on_cluster)
            print(f"smoke pipeline ({n_stages} stage kinds, {jobs} stage instances), "
                  f"{args.jobs_cpus} CPU(s) per stage, {os.cpu_count()} cores")
            print(f"  dvc repro                                  {repro_s:7.1f} s   dvc status clean: "
                  f"{_clean(plain, env)}")
            print(f"  isdarts cluster submit + collect --wait    {cluster_s:7.1f} s   dvc status clean: "
                  f"{_clean(on_cluster, env)}")
            print(f"  results equal (JSON without timings, tables without cost): {not diff}"
                  + (f"; differ: {', '.join(diff)}" if diff else ""))
        finally:
            local_slurm.stop(base / "slurm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
