"""Every method's search step against DARTS 1st order's: time and peak memory, measured side by side in one run.

For each space and supernet size, each method runs in a subprocess of its own (alternating with nothing else,
one after another, so all see the same machine): its supernet and method are built from the profile's settings
for that method (the quick profile by default) at the size asked for, the method is put in the middle epoch of
its schedule (past warm-ups that freeze α), and its full training step (`train_step`: the weight step and, for
bi-level methods, the α step, whatever else the method does per step) runs on random CIFAR-shaped batches.
Time: the median of the timed steps after warm-up steps. Memory: the process's peak resident set during the
timed step above its resident set before it (Linux's VmHWM, reset through /proc/self/clear_refs), i.e. what the
step itself allocates at its peak, measured in a second process with glibc's malloc told to return freed memory
at once. Ratios are against darts1 of the same run, space and size.

    python scripts/benchmark_methods.py --sizes quick paper --threads 2

Sizes: `quick` is the profile's own supernet (C, N, image size); `paper` is the paper's supernet (NB201: C=16,
N=5; DARTS space: C=16, N=2, 8 cells), 32x32 images. Every size uses batch 64 so that steps compare.
Needs only torch and pyyaml (no mlflow or dvc).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAPER_SIZE = {"nb201": {"C": 16, "N": 5, "image_size": 32}, "darts": {"C": 16, "N": 2, "image_size": 32}}
BATCH = 64
REFERENCE = "darts1"


def search_config(params_file: Path, space: str, method: str, size: str):
    """The profile's settings for `method` on `space`, at the asked supernet size and batch 64."""
    import yaml

    from isdarts.config import params_from_dict

    raw = yaml.safe_load(params_file.read_text())
    raw["device"] = "cpu"
    search = raw[space]["search"]
    search.update(batch_size=BATCH, **(PAPER_SIZE[space] if size == "paper" else {}))
    if method not in raw[space]["methods"]:
        raw[space]["methods"] = [*raw[space]["methods"], method]
    options = raw[space]["options"]
    if method not in options:  # a method the profile runs on the other space only: that space's section
        other = "darts" if space == "nb201" else "nb201"
        options[method] = raw[other]["options"][method]
    params = params_from_dict(raw)
    runs = params.nb201 if space == "nb201" else params.darts.runs
    return runs.search(method)


def worker(args: argparse.Namespace) -> None:
    import torch

    from isdarts.search.loop import build_method

    torch.set_num_threads(args.threads)
    cfg = search_config(args.params, args.space, args.method, args.size)
    # Search-only settings (epochs, warm-ups) stay the profile's; batch overrides above make steps comparable.
    cfg = dataclasses.replace(cfg, batch_size=BATCH)
    gen = torch.Generator().manual_seed(0)
    method = build_method(cfg, num_classes=10, device=torch.device("cpu"), generator=gen)
    try:
        method.set_epoch(cfg.epochs // 2)
    except RuntimeError:  # a stage boundary there (DrNAS): stages change at an epoch's end, so take the epoch before
        method.set_epoch(cfg.epochs // 2 - 1)
    size = cfg.image_size

    def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(BATCH, 3, size, size, generator=g), torch.randint(0, 10, (BATCH,), generator=g)

    def step(i: int) -> None:
        x, y = batch(2 * i)
        if method.bilevel:
            method.train_step(x, y, *batch(2 * i + 1))
        else:
            method.train_step(x, y)

    for i in range(args.warmup):
        step(i)
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    times = []
    for i in range(args.warmup, args.warmup + args.steps):
        start = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - start)
    peak = _status_kb("VmHWM")
    print(json.dumps({"seconds": statistics.median(times), "peak_mb": max(peak - before, 0) / 1024,
                      "C": cfg.C, "N": cfg.N, "image_size": size}))


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def measure(args: argparse.Namespace, space: str, method: str, size: str, steps: int) -> dict:
    """Time with the default allocator; memory in a second process whose glibc malloc hands freed blocks back at
    once (by default it keeps them for reuse, its mmap threshold growing with each free, so a step's peak would
    not show in the resident set; those fixed thresholds slow allocation-heavy steps, hence two processes)."""
    base = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    strict = {**base, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    result = {}
    for env, n, keys in ((base, steps, ("seconds", "C", "N", "image_size")), (strict, 1, ("peak_mb",))):
        cmd = [sys.executable, __file__, "--worker", "--space", space, "--method", method, "--size", size,
               "--params", str(args.params), "--threads", str(args.threads), "--steps", str(n),
               "--warmup", str(args.warmup)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
        got = json.loads(done.stdout.strip().splitlines()[-1])
        result.update({k: got[k] for k in keys})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "profiles" / "quick.yaml")
    parser.add_argument("--spaces", nargs="+", default=["nb201", "darts"])
    parser.add_argument("--sizes", nargs="+", default=["quick", "paper"], choices=["quick", "paper"])
    parser.add_argument("--methods", nargs="+", default=None, help="default: every method of the table")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps at the quick size")
    parser.add_argument("--paper-steps", type=int, default=3, help="timed steps at the paper size")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--space", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from isdarts.registry import METHODS

    names = args.methods or list(METHODS)
    for space in args.spaces:
        for size in args.sizes:
            runnable = [m for m in names if space in METHODS[m].spaces]
            order = [REFERENCE, *(m for m in runnable if m != REFERENCE)]
            steps = args.steps if size == "quick" else args.paper_steps
            results = {m: measure(args, space, m, size, steps) for m in order}
            ref = results[REFERENCE]
            if "error" in ref:
                raise SystemExit(f"{REFERENCE} on {space} ({size}) failed: {ref['error']}")
            shape = next((r for r in results.values() if "C" in r), {})
            print(f"\n{space}, {size} size (C={shape.get('C')}, N={shape.get('N')}, {shape.get('image_size')}px, "
                  f"batch {BATCH}, {args.threads} threads): median of {steps} steps after {args.warmup} warm-up")
            print(f"| method | step (s) | × {REFERENCE} | peak step memory (MB) | × {REFERENCE} |")
            print("|---|---:|---:|---:|---:|")
            for m in order:
                r = results[m]
                if "error" in r:
                    print(f"| {m} | failed: {r['error']} | | | |")
                    continue
                print(f"| {m} | {r['seconds']:.3f} | {r['seconds'] / ref['seconds']:.2f} | {r['peak_mb']:.0f} | "
                      f"{r['peak_mb'] / max(ref['peak_mb'], 1e-9):.2f} |", flush=True)


if __name__ == "__main__":
    main()
