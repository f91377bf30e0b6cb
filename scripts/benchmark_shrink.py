"""Supernet step time along a search's shrink path: does each shrink step cut the time by the work of the ops
it prunes?

Reads the alive masks of a search's history.json (by default the committed quick-profile IS-DARTS search of the
space), sets each distinct mask in turn on a supernet of the size asked for, and at each one times a full
training step (forward, backward, clip, SGD: IS-DARTS's weight step) and an IIM pass, next to the forward
multiply-adds counted at that mask (torch.utils.flop_counter: the convolutions and the classifier that really
run). The masks are timed in turn at every step, so machine drift hits them alike.

"In proportion to the work of the alive ops" is checked against a cost model measured on the side: the step
with every edge down to `none` (stem, residual blocks or preprocessing, head, optimiser: what no shrink step
touches), and for each cell kind and op the step with every edge of that kind keeping only that op. Their
differences give each op's cost per edge; adding up the alive ops of a path mask predicts its step time, and
the table puts the prediction beside the measurement. A pruned op that still cost something would show as a
measured step above the prediction. Ops differ a lot in cost (a `none` costs nothing in training, a 3x3
convolution most), so the alive count alone says little, and MACs miss the memory-bound work (batch norms,
sums, pools), which is why the model is measured rather than counted.

The supernet runs with the search's own speed settings for the device (`auto`: on CPU the DARTS space
channels-last and, at C >= 16 and 32x32, the compiled IIM reductions), except torch.compile of the training
forward and CUDA graphs, which would compile or capture anew at every mask.

    python scripts/benchmark_shrink.py --space nb201 --C 16 --N 5 --batch 64 --threads 2
    python scripts/benchmark_shrink.py --space darts --C 16 --N 2 --batch 64 --threads 2

Needs only torch (no mlflow or dvc), so it also runs on the GPU machine with PYTHONPATH=. .
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, as scripts/gpu_check.py is
sys.path.insert(0, str(ROOT / "scripts"))  # and loaded by tests with runpy, which does not add its folder

from benchmark_search import timed_together  # noqa: E402

from isdarts.config.search import SearchConfig  # noqa: E402
from isdarts.registry import space_spec  # noqa: E402
from isdarts.search.iim import measure_iim  # noqa: E402
from isdarts.search.speed import apply_speed, configure_backends, resolve_speed  # noqa: E402
from isdarts.spaces.space import Space  # noqa: E402
from isdarts.train.runtime import resolve_device  # noqa: E402

NONE = 0  # `none` is op 0 in both spaces
DEFAULT_HISTORY = {
    "nb201": ROOT / "runs/nb201/isdarts/seed_0/history.json",
    "darts": ROOT / "runs/darts/search/isdarts/seed_0/history.json",
}


@dataclass(frozen=True)
class MaskState:
    """One mask to time: a search's mask at an epoch, or a cost probe (every edge of a kind keeping one op)."""

    label: str
    masks: dict[str, torch.Tensor]  # {cell kind: mask}: "cell" on NB201, "normal"/"reduce" on the DARTS space
    only: tuple[str, int] | None = None  # a cost probe's (kind, op); None for the base and path masks

    def alive(self, kind: str, op: int) -> int:
        return int(self.masks[kind][:, op].sum())

    @property
    def alive_total(self) -> int:
        return sum(int(m.sum()) for m in self.masks.values())


def _shapes(recorded):
    """The mask shapes of a history's `alive` record: one shape (a one-kind space), or {kind: shape}."""
    if isinstance(recorded, dict):
        return {kind: _shapes(m) for kind, m in recorded.items()}
    return tuple(torch.tensor(recorded).shape)


def shrink_path(history: Path, space: Space) -> list[MaskState]:
    """The distinct masks of a search history of `space`, in the order the search trained with them."""
    try:
        epochs = json.loads(history.read_text())["epochs"]
        recorded = [record["alive"] for record in epochs]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{history}: not a search history.json with per-epoch 'alive' masks ({exc})") from exc
    # The history records a one-kind space's mask without the kind level (Space.record).
    expected = space.record({kind: (space.num_edges, space.num_ops) for kind in space.kinds})
    for alive in recorded:
        if _shapes(alive) != expected:
            raise SystemExit(
                f"{history}: its masks {_shapes(alive)} are not those of the {space.name} space ({expected}); "
                "pass --space to match the history, or --history of a search of this space"
            )
    states: list[MaskState] = []
    for record, alive in zip(epochs, recorded, strict=True):
        masks = {kind: torch.tensor(m, dtype=torch.float32) for kind, m in space.per_kind(alive).items()}
        if not states or any(not torch.equal(masks[k], states[-1].masks[k]) for k in masks):
            states.append(MaskState(f"epoch {record['epoch']}", masks))
    if any(not bool(m.all()) for m in states[0].masks.values()):
        full = {kind: torch.ones_like(m) for kind, m in states[0].masks.items()}
        states.insert(0, MaskState("all alive", full))
    return states


def cost_probes(full: MaskState, space: Space) -> list[MaskState]:
    """The base (every edge of every kind keeping only `none`), then per cell kind and op the base with every
    edge of that kind keeping only that op."""
    def only(kind_op: dict[str, int]) -> dict[str, torch.Tensor]:
        masks = {}
        for kind, m in full.masks.items():
            masks[kind] = torch.zeros_like(m)
            masks[kind][:, kind_op.get(kind, NONE)] = 1
        return masks

    probes = [MaskState("only none", only({}))]
    for kind in full.masks:
        for op, name in enumerate(space.ops):
            if op != NONE:
                label = f"only {name}" + ("" if space.flat else f" ({kind})")
                probes.append(MaskState(label, only({kind: op}), (kind, op)))
    return probes


def set_masks(model: torch.nn.Module, state: MaskState) -> None:
    for kind, mask in state.masks.items():
        model.set_mask(kind, mask)


def forward_macs(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds of one training-mode forward over `x`, per image."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2 / x.shape[0]


def predicted_steps(path: list[MaskState], probes: list[MaskState], steps: dict[str, float]) -> list[float]:
    """Each path mask's step time as the base step plus the measured cost of every (edge, op) it keeps."""
    base, *single_ops = probes
    per_edge = {  # (kind, op) -> seconds one edge's op costs
        probe.only: (steps[probe.label] - steps[base.label]) / probe.alive(*probe.only) for probe in single_ops
    }
    return [steps[base.label] + sum(cost * state.alive(k, o) for (k, o), cost in per_edge.items()) for state in path]


def measure(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    space = space_spec(args.space).load()
    history = args.history or DEFAULT_HISTORY[args.space]
    path = shrink_path(history, space)
    probes = [] if args.no_cost_model else cost_probes(path[0], space)
    cfg = SearchConfig(space=args.space, C=args.C, N=args.N, batch_size=args.batch, image_size=args.image_size,
                       fused_ops=not args.unfused)
    # torch.compile would recompile the step at every mask: what it saves is measured by benchmark_search.py.
    plan = dataclasses.replace(resolve_speed(cfg, device), compile=False)
    configure_backends(plan)
    torch.manual_seed(0)
    model = apply_speed(space.build_supernet(args.C, args.N, 10, fused=not args.unfused).to(device), plan)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=gen).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    if plan.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, nesterov=True, weight_decay=3e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    def train() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x)[1], y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    macs = []
    for state in path:
        set_masks(model, state)
        macs.append(forward_macs(model, x))

    def step_at(state: MaskState):
        def fn(_i: int) -> None:
            set_masks(model, state)  # host lists and a (14, 8) copy: microseconds against a step's milliseconds
            train()
        return fn

    def iim_pass(_i: int) -> None:  # runs right after step_at(state): the mask is already set
        measure_iim(model, [(x, y)], compiled=plan.compile_iim)

    # Each path mask's step and IIM pass, then each probe's step, in turn at every step.
    work = [fn for state in path for fn in (step_at(state), iim_pass)] + [step_at(p) for p in probes]
    medians = timed_together(work, args.steps, args.warmup, device)
    n = 2 * len(path)
    steps = dict(zip([s.label for s in path + probes], medians[0:n:2] + medians[n:], strict=True))
    iim_s = dict(zip([s.label for s in path], medians[1:n:2], strict=True))
    predicted = predicted_steps(path, probes, steps) if probes else [None] * len(path)
    rows = [
        {"mask": s.label, "alive": s.alive_total, "macs_per_image": m, "step_s": steps[s.label],
         "predicted_step_s": p, "iim_s": iim_s[s.label]}
        for s, m, p in zip(path, macs, predicted, strict=True)
    ]
    probe_rows = [{"mask": s.label, "step_s": steps[s.label]} for s in probes]
    return {"space": args.space, "C": args.C, "N": args.N, "batch": args.batch, "image_size": args.image_size,
            "device": str(device), "threads": args.threads if device.type == "cpu" else None,
            "fused": not args.unfused, "speed": dataclasses.asdict(plan), "steps": args.steps,
            "history": str(history), "rows": rows, "cost_probes": probe_rows}


def speed_text(plan: dict) -> str:
    on = [key for key in ("channels_last", "amp", "compile", "cudnn_benchmark", "compile_iim") if plan[key]]
    return " + ".join(on) if on else "defaults"


def render(result: dict) -> str:
    full = result["rows"][0]
    lines = [
        f"{result['space']} supernet C={result['C']} N={result['N']}, batch {result['batch']}, "
        f"{result['image_size']}x{result['image_size']}, device {result['device']}"
        + (f" ({result['threads']} threads)" if result["threads"] else "")
        + f", {'fused' if result['fused'] else 'unfused'}, speed {speed_text(result['speed'])}; "
        f"medians of {result['steps']} steps, masks of {result['history']}",
        "| mask | alive (edge, op) | fwd MMAC/image | MACs vs full | step ms | step vs full | predicted ms "
        "| measured / predicted | IIM pass ms | IIM vs full |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        p = r["predicted_step_s"]
        predicted = ("-", "-") if p is None else (f"{p * 1e3:.0f}", f"{r['step_s'] / p:.2f}")
        lines.append(
            f"| {r['mask']} | {r['alive']} | {r['macs_per_image'] / 1e6:.1f} "
            f"| {r['macs_per_image'] / full['macs_per_image']:.2f} | {r['step_s'] * 1e3:.0f} "
            f"| {r['step_s'] / full['step_s']:.2f} | {predicted[0]} | {predicted[1]} "
            f"| {r['iim_s'] * 1e3:.0f} | {r['iim_s'] / full['iim_s']:.2f} |"
        )
    if result["cost_probes"]:
        lines.append("cost model, the step with every edge keeping only one op: " + ", ".join(
            f"{p['mask'].removeprefix('only ')} {p['step_s'] * 1e3:.0f} ms" for p in result["cost_probes"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=("nb201", "darts"), default="nb201")
    parser.add_argument("--history", type=Path, default=None,
                        help="a search's history.json (default: the committed quick-profile IS-DARTS search)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--N", type=int, default=None, help="cells per stage (default: 5 on NB201, 2 on DARTS)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per mask, after --warmup")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--unfused", action="store_true", help="time the unfused reference supernet instead")
    parser.add_argument("--no-cost-model", action="store_true",
                        help="time only the path's masks, not the per-op cost probes the prediction needs")
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers here as JSON")
    args = parser.parse_args(argv)
    args.N = args.N or (5 if args.space == "nb201" else 2)
    result = measure(args)
    print(render(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
