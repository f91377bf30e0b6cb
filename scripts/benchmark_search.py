"""Supernet search speed, this checkout against a baseline commit, measured side by side in one run.

For each space the script runs the baseline's supernet (default: commit 9bd8fc1, before fused ops) and this
checkout's in alternating subprocesses, so both see the same machine load, and prints images/s of a full
training step (forward, backward, SGD step: IS-DARTS's weight step) with every op alive and after shrinking
to a single path, plus the IIM pass against a no-grad forward over the same images. Inputs are random
CIFAR-shaped tensors (speed does not depend on pixel values). Medians over timed steps after warm-up, the
device synchronised around each step.

    python scripts/benchmark_search.py --space nb201 --C 16 --N 5 --batch 64 --threads 2
    python scripts/benchmark_search.py --space darts --C 16 --N 2 --batch 64 --threads 2

Needs only torch (no mlflow or dvc), so it also runs on the GPU machine with PYTHONPATH=. .
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# NB201: the NB201 optimum cell; DARTS space: two inputs per node (any single path costs about the same).
NB201_FINAL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def baseline_tree(rev: str, into: Path) -> Path:
    """The baseline's isdarts package, extracted from git into `into` (nothing in the checkout changes)."""
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "isdarts"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as archive:
        archive.extractall(into, filter="data")
    return into


def run_worker(tree: Path, args: argparse.Namespace, variant: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, __file__, "--worker", variant, *sys.argv[1:]]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=tree).stdout
    return json.loads(out.strip().splitlines()[-1])


# ----------------------------------------------------------------- worker (runs inside one tree)
def build(space: str, variant: str, args: argparse.Namespace):
    """The supernet of the tree on PYTHONPATH: the baseline's flat layout or this checkout's."""
    import torch

    if space == "nb201":
        try:
            from isdarts.spaces.nb201.supernet import Nb201Supernet as Net
        except ImportError:  # the baseline's flat layout
            from isdarts.spaces.nb201_supernet import Nb201Supernet as Net
    else:
        try:
            from isdarts.spaces.darts.supernet import DartsSupernet as Net
        except ImportError:
            from isdarts.spaces.darts_supernet import DartsSupernet as Net
    torch.manual_seed(0)
    variant = variant.removeprefix("old:")  # the same settings, run in the baseline's tree
    name, *levers = variant.split("+")
    unknown = set(levers) - {"cl", "amp", "ciim"}
    if name not in ("baseline", "unfused", "fused") or unknown or (name == "baseline" and levers):
        raise SystemExit(f"unknown variant {variant!r}: use baseline, unfused or fused, plus any of +cl, +amp, +ciim")
    kwargs = {} if name == "baseline" else {"fused": name != "unfused"}
    model = Net(args.C, args.N, **kwargs).to(args.device_obj)
    if "amp" in levers:
        # The search's own speed code: bf16 autocast of the training forward, IIM pass and eval in float32.
        from isdarts.search.speed import SpeedPlan, apply_speed

        plan = SpeedPlan(channels_last="cl" in levers, amp=True, compile=False, cudnn_benchmark=False)
        return apply_speed(model, plan)
    if "cl" in levers:
        model = model.to(memory_format=torch.channels_last)
    return model


def single_path(model, space: str) -> None:
    import torch

    if space == "nb201":
        try:
            from isdarts.spaces.nb201.genotype import Nb201Genotype
        except ImportError:
            from isdarts.spaces.nb201_genotype import Nb201Genotype
        mask = torch.zeros(6, 5)
        for e, op in enumerate(Nb201Genotype.from_arch_str(NB201_FINAL).op_indices()):
            mask[e, op] = 1
        kinds = getattr(model, "KINDS", None)  # the space interface: set_mask("cell", mask); before it: set_mask(mask)
        if kinds:
            model.set_mask(kinds[0], mask)
        else:
            model.set_mask(mask)
        return
    for kind in ("normal", "reduce"):  # per node: skip from its first input, sep_conv_3x3 from its second
        mask = torch.zeros(14, 8)
        row = 0
        for node in range(4):
            mask[row, 1] = 1
            mask[row + 1, 2] = 1
            row += 2 + node
        model.set_mask(kind, mask)


def iim_measure(space: str):
    """The IIM pass of the tree on PYTHONPATH for `space`'s supernet; None where the tree has none (the DARTS
    space before its IIM). Since the space interface one `measure_iim` measures every supernet."""
    import importlib.util

    from isdarts.search import iim

    if space == "nb201" or importlib.util.find_spec("isdarts.spaces.space") is not None:
        return iim.measure_iim
    return getattr(iim, "measure_iim_darts", None)  # the DARTS-space pass before the space interface


def timed(fn, steps: int, warmup: int, device) -> float:
    return timed_together([fn], steps, warmup, device)[0]


def timed_together(fns, steps: int, warmup: int, device) -> list[float]:
    """Median seconds of each of `fns`, called in turn every step, so that a ratio of two of them sees the same
    machine load (this machine's speed drifts within a minute)."""
    from isdarts.train.runtime import synchronize

    times: list[list[float]] = [[] for _ in fns]
    for i in range(warmup + steps):
        for fn, spent in zip(fns, times, strict=True):
            synchronize(device)
            start = time.perf_counter()
            fn(i)
            synchronize(device)
            if i >= warmup:
                spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def worker(variant: str, args: argparse.Namespace) -> dict:
    import torch

    from isdarts.train.runtime import resolve_device

    torch.set_num_threads(args.threads)
    args.device_obj = device = resolve_device(args.device)
    size = 32
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(args.batch, 3, size, size, generator=gen).to(device),
         torch.randint(0, 10, (args.batch,), generator=gen).to(device))
        for _ in range(4)
    ]
    model = build(args.space, variant, args)
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, nesterov=True, weight_decay=3e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train(i: int) -> None:
        x, y = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x)[1], y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    result = {"full": timed(train, args.steps, args.warmup, device)}
    measure = iim_measure(args.space)
    if measure is not None:
        # +ciim: the IIM reductions compiled (`compile_iim: true`); the warm-up pass compiles them.
        compiled = {"compiled": True} if "ciim" in variant.split("+") else {}

        def iim(i: int) -> None:
            measure(model, [batches[i % len(batches)]], **compiled)

        def forward(i: int) -> None:
            with torch.no_grad():
                model.eval()
                model(batches[i % len(batches)][0])
                model.train()

        result["iim"], result["forward"] = timed_together(
            [iim, forward], args.iim_steps or max(2, args.steps // 2), 1, device
        )
    single_path(model, args.space)
    result["single"] = timed(train, args.steps, args.warmup, device)
    return result


# ----------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=("nb201", "darts"), default="nb201")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--N", type=int, default=None, help="cells per stage (default: 5 on NB201, 2 on DARTS)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iim-steps", type=int, default=None,
                        help="timed IIM passes and no-grad forwards (default: half of --steps, at least 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of baseline and new")
    parser.add_argument("--baseline", default="9bd8fc1", help="git revision to compare against")
    parser.add_argument("--variants", default="baseline,unfused,fused,fused+cl",
                        help="baseline (the baseline's defaults), unfused or fused, each optionally with any of +cl "
                             "(channels-last), +amp (bf16 autocast of the training step, as `amp: true`) and +ciim "
                             "(the IIM reductions compiled, as `compile_iim: true`); "
                             "'old:<variant>' runs a variant in the baseline's tree (a baseline with these settings)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.N = args.N or (5 if args.space == "nb201" else 2)
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    variants = args.variants.split(",")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        in_old = {v for v in variants if v == "baseline" or v.startswith("old:")}
        old = baseline_tree(args.baseline, Path(tmp)) if in_old else None
        for _ in range(args.rounds):
            for v in variants:
                runs[v].append(run_worker(old if v in in_old else ROOT, args, v))
    print(f"{args.space} supernet C={args.C} N={args.N}, batch {args.batch}, {args.threads} threads, "
          f"device {args.device}; medians of {args.steps} steps, best of {args.rounds} alternating rounds")
    print(f"{'variant':<12}{'full img/s':>12}{'vs base':>9}{'single img/s':>14}{'vs base':>9}"
          f"{'IIM/forward':>13}")
    best = {v: {k: min(r[k] for r in rs) for k in rs[0]} for v, rs in runs.items()}
    base = best.get("baseline")
    for v, b in best.items():
        full, single = args.batch / b["full"], args.batch / b["single"]
        ratio = (f"{base['full'] / b['full']:.2f}x", f"{base['single'] / b['single']:.2f}x") if base else ("", "")
        iim = f"{b['iim'] / b['forward']:>12.2f}x" if "iim" in b else f"{'-':>13}"
        print(f"{v:<12}{full:>12.1f}{ratio[0]:>9}{single:>14.1f}{ratio[1]:>9}{iim}")


if __name__ == "__main__":
    main()
