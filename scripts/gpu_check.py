"""GPU check of the search fast path (issue 9): the fused path's CUDA correctness (against float64 too),
where an eager step's time goes, the search's CUDA graphs against eager, a timed paper-size IS-DARTS search
extrapolated to the paper's epochs, and images/s of each speed lever. JSON and a markdown summary go to
--out, rewritten after every section, so a run cut short still leaves what it measured.

On the device machine (the `run` tool; it has torch, numpy, pyyaml, tqdm, but no mlflow, dvc or network),
from the repository root. The CIFAR-10 subset lives outside the working tree, so copy it into `.gpu_data/`
(ignored by .gitignore) and carry it along (run this part on the development machine first):

    mkdir -p .gpu_data && cp -r ../shared/data/cifar10-subset/cifar-10-batches-py .gpu_data/

then call the `run` tool with carry [".gpu_data"] and timeout_s 540:

    PYTHONPATH=. python3 scripts/gpu_check.py --data .gpu_data --out "$OUT"

It stops measuring when --budget-s (default 420 s) runs short and still writes its outputs, sizes the
timed search to the rate measured before it, and turns compilation off for a search it could not also pay
for: sized to end inside 8 minutes on one H100/H200 (first run on an H200 on 2026-12-04: BENCHMARKS.md).
The full CIFAR-10 is not there: the 5,551-image subset is tiled to 50,000 training (and 1,017 test images
to 10,000) images, so times are real, accuracies meaningless.

CI runs the same checks at tiny size on CPU in well under a minute (tests/test_gpu_check.py):

    PYTHONPATH=. python scripts/gpu_check.py --data ../shared/data/cifar10-subset --out /tmp/gpu_check --cpu-tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # also works without PYTHONPATH=.

from isdarts.config import params_from_dict  # noqa: E402
from isdarts.config.search import SearchConfig  # noqa: E402
from isdarts.data.cifar import CifarArrays, load_cifar10, locate_cifar10  # noqa: E402
from isdarts.registry import space_spec  # noqa: E402
from isdarts.search.iim import iim_reduction, measure_iim  # noqa: E402
from isdarts.search.loop import SearchRun, build_method, run_search  # noqa: E402
from isdarts.search.shrink import shrink_step  # noqa: E402
from isdarts.search.speed import FastForward, resolve_speed  # noqa: E402
from isdarts.train.graphs import BatchGraph  # noqa: E402
from isdarts.train.runtime import describe_device, make_deterministic, make_generator, resolve_device, synchronize  # noqa: E402

PAPER_TRAIN, PAPER_TEST = 50_000, 10_000
PAPER_EPOCHS = {"nb201": 30, "darts": 50}
# What the levers tables compare: each lever alone against plain eager NCHW float32, then the eager ones
# together, then all of them (what `auto` picks on CUDA).
_OFF = {"channels_last": False, "amp": False, "compile": False, "cudnn_benchmark": False, "cuda_graphs": False}
_ALL = dict.fromkeys(_OFF, True)
LEVERS: dict[str, dict[str, bool]] = {
    "eager": _OFF,
    "channels_last": {**_OFF, "channels_last": True},
    "bf16": {**_OFF, "amp": True},
    "cudnn_benchmark": {**_OFF, "cudnn_benchmark": True},
    "cuda_graphs": {**_OFF, "cuda_graphs": True},
    "compile": {**_OFF, "compile": True},
    "combined": {**_ALL, "cuda_graphs": False},
    "combined + cuda_graphs": _ALL,
}
CUDA_ONLY = ("cudnn_benchmark", "cuda_graphs", "combined + cuda_graphs")
SECTIONS = ("correctness", "profile", "graphs", "levers", "search")
# The NB201 levers of the first table; the compile-only ones follow in a second, which a short budget skips.
NB201_FIRST = ("eager", "channels_last", "bf16", "cudnn_benchmark", "cuda_graphs", "combined")


@dataclasses.dataclass(frozen=True)
class Size:
    """The model, batch and data sizes of one mode: the paper's on a GPU, tiny for CI on CPU."""

    nb201: dict[str, int]
    darts: dict[str, int]
    train_images: int
    test_images: int
    search_epochs: int  # NB201 epochs actually run (then extrapolated)
    darts_train_images: int  # DARTS space: images of the one timed epoch pair (then scaled to 50,000)
    darts_holdout: int
    steps: int  # timed steps per lever
    warmup: int
    compile_spaces: tuple[str, ...]  # where the compile levers run (CPU tiny: DARTS compiles for a minute)


PAPER_SIZE = Size({"C": 16, "N": 5, "batch_size": 64}, {"C": 16, "N": 2, "batch_size": 64},
                  PAPER_TRAIN, PAPER_TEST, 3, 6400, 600, 30, 5, ("nb201", "darts"))
TINY_SIZE = Size({"C": 4, "N": 1, "batch_size": 16}, {"C": 4, "N": 1, "batch_size": 8}, 256, 64, 2, 48, 16, 3, 1,
                 ("nb201",))


class Budget:
    """Wall-clock seconds left for measuring; sections ask before starting something that costs `need`."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def allows(self, need: float) -> bool:
        return self.left() > need


class Report:
    """The results so far, rewritten to results.json and summary.md after every section."""

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.out, self.data = out, {**header, "sections": {}}
        self.lines: list[str] = []
        out.mkdir(parents=True, exist_ok=True)

    def section(self, name: str, result: Any, lines: list[str], seconds: float) -> None:
        self.data["sections"][name] = {**result, "section_s": seconds} if isinstance(result, dict) else result
        self.lines += [f"## {name} ({seconds:.0f} s)", "", *lines, ""]
        self.write()

    def run(self, name: str, work: Callable[[], dict[str, Any]], lines: Callable[[dict[str, Any]], list[str]]) -> None:
        """Run one section and record it; a failure is recorded too, and the next sections still run."""
        began = time.monotonic()
        try:
            result = work()
            text = lines(result)
        except Exception as exc:  # a GPU check runs once: keep going and say what broke
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            text = [f"FAILED: {result['error']}", "", "```", result["traceback"].strip(), "```"]
        self.section(name, result, text, time.monotonic() - began)

    def write(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        head = [f"# GPU check, {self.data['date']}", "", f"- device: {self.data['device_name']}",
                f"- torch {self.data['torch']}, mode {self.data['mode']}", f"- data: {self.data['data_note']}", ""]
        (self.out / "summary.md").write_text("\n".join(head + self.lines) + "\n")


# ----------------------------------------------------------------- configs and data
def search_cfg(space: str, size: Size, device: torch.device, **search: Any) -> SearchConfig:
    """The paper profile's IS-DARTS search on `space`, at `size`, with `search` overrides."""
    raw = yaml.safe_load((ROOT / "profiles/paper.yaml").read_text())
    raw["profile"], raw["device"] = "custom", device.type
    raw[space]["search"].update({**getattr(size, space), **search})
    if space == "darts":
        raw["darts"]["options"]["isdarts"]["iim"]["n_samples"] = size.darts_holdout
    params = params_from_dict(raw)
    return params.nb201.search("isdarts") if space == "nb201" else params.darts.runs.search("isdarts")


def tiled_arrays(data: Path, size: Size) -> tuple[CifarArrays, str]:
    """The CIFAR-10 found at `data`, its training and test images repeated up to the mode's sizes."""
    source = locate_cifar10(data, download=False, subset_fallback=data)
    arrays = load_cifar10(source)
    n_train, n_test = len(arrays.train_y), len(arrays.test_y)

    def tile(x: np.ndarray, n: int) -> np.ndarray:
        return np.resize(x, (n, *x.shape[1:]))

    tiled = CifarArrays(tile(arrays.train_x, size.train_images), tile(arrays.train_y, size.train_images),
                        tile(arrays.test_x, size.test_images), tile(arrays.test_y, size.test_images), arrays.classes)
    note = (f"CIFAR-10 {source.kind} at {source.path} ({n_train:,} train / {n_test:,} test images), tiled to "
            f"{size.train_images:,} / {size.test_images:,}: the full CIFAR-10 is not available, so times are "
            "those of a paper-size search but accuracies mean nothing")
    return tiled, note


def random_batch(batch: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(batch, 3, 32, 32, generator=gen), torch.randint(0, 10, (batch,), generator=gen)
    return x.to(device), y.to(device)


# ----------------------------------------------------------------- 1. correctness
def _supernet_pair(space: str, size: Size, device: torch.device,
                   channels_last: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    build = space_spec(space).load().build_supernet
    dims = getattr(size, space)
    torch.manual_seed(0)
    fused = build(dims["C"], dims["N"], 10, fused=True)
    reference = build(dims["C"], dims["N"], 10, fused=False)
    reference.load_state_dict(fused.state_dict())
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return fused.to(device, memory_format=fmt), reference.to(device, memory_format=fmt)


def _masks(space: str) -> list[tuple[str, torch.Tensor]]:
    """All alive, after one shrink step on a random table, and the final single path (or two per node)."""
    spec = space_spec(space).load()
    mask, steps = torch.ones(spec.num_edges, spec.num_ops), 4 if space == "nb201" else 2
    table = torch.rand(mask.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    one = shrink_step(mask, table, spec.subsets, keep=spec.keep, steps=steps, step=0).mask
    final = shrink_step(one, table, spec.subsets, keep=spec.keep, steps=1, step=0).mask
    return [("all alive", mask), ("one shrink step", one), ("final", final)]


def _set_mask(model: torch.nn.Module, mask: torch.Tensor) -> None:
    for kind in model.KINDS:  # the same mask on every cell kind
        model.set_mask(kind, mask)


def _stacked(tables: dict[str, torch.Tensor]) -> torch.Tensor:
    """`measure_iim`'s {kind: table} as one (kinds, edges, ops) tensor, in kind order."""
    return torch.stack(list(tables.values()))


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| over finite entries (inf entries, the IIM of `none`, must agree exactly)."""
    finite = b.isfinite()
    if not torch.equal(finite, a.isfinite()) or not torch.equal(a[~finite], b[~finite]):
        return float("inf")
    a, b = a[finite].double(), b[finite].double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) if b.numel() else 0.0


def _forward_backward(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    logits = model(x)[1]
    torch.nn.functional.cross_entropy(logits, y).backward()
    out = {"logits": logits.detach()}
    out.update({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    return out


def _grad_errors(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> tuple[float, list[str]]:
    """The largest gradient difference relative to the reference's largest gradient (a conv bias before a BN
    has a gradient of exactly 0 in exact arithmetic, so its own scale is rounding noise), and the three
    parameters that differ most."""
    names = [k for k in ref if k != "logits"]
    scale = max(float(ref[k].abs().max()) for k in names)
    errors = {k: float((ours[k].double().cpu() - ref[k].double().cpu()).abs().max()) / scale for k in names}
    worst = sorted(errors.items(), key=lambda kv: -kv[1])[:3]
    return max(errors.values()), [f"{k} {v:.1e}" for k, v in worst]


def check_correctness(space: str, size: Size, device: torch.device, tolerance: float,
                      channels_last: bool | None = None) -> dict[str, Any]:
    """Fused against unfused on the device, TF32 off (it rounds to 10 mantissa bits, far above float32).

    On a GPU both are also compared with the unfused network in float64 on the CPU, so that a mismatch
    says which of the two is wrong, and in which parameters.
    """
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    if channels_last is None:
        channels_last = space == "darts" or device.type == "cuda"
    try:
        fused, reference = _supernet_pair(space, size, device, channels_last)
        exact = None
        if device.type == "cuda":
            exact = _supernet_pair(space, size, torch.device("cpu"), False)[1].double()
        x, y = random_batch(8, device, seed=2)
        rows = []
        for label, mask in _masks(space):
            _set_mask(fused, mask)
            _set_mask(reference, mask)
            ours, ref = _forward_backward(fused, x, y), _forward_backward(reference, x, y)
            grads, worst = _grad_errors(ours, ref)
            iim_ours, iim_ref = _stacked(measure_iim(fused, [(x, y)])), _stacked(measure_iim(reference, [(x, y)]))
            # Masked entries are NaN in both tables; `none` is +inf in both.
            iim = _relative_error(*(t.nan_to_num(nan=0.0, posinf=float("inf")) for t in (iim_ours, iim_ref)))
            row = {"mask": label, "logits": _relative_error(ours["logits"], ref["logits"]),
                   "grads": grads, "iim": iim, "same_grad_keys": ours.keys() == ref.keys(),
                   "worst_fused_vs_unfused": worst}
            if exact is not None:
                _set_mask(exact, mask)
                truth = _forward_backward(exact, x.cpu().double(), y.cpu())
                for who, got in (("fused", ours), ("unfused", ref)):
                    grads64, worst64 = _grad_errors(got, truth)
                    row[f"{who}_vs_fp64"] = {"logits": _relative_error(got["logits"].cpu().double(), truth["logits"]),
                                             "grads": grads64, "worst": worst64}
            rows.append(row)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    if exact is None:
        passed = all(r["same_grad_keys"] and max(r["logits"], r["grads"], r["iim"]) <= tolerance for r in rows)
    else:
        # On a GPU the unfused cells are no reference for gradients (channels-last, they were wrong on an H200:
        # BENCHMARKS.md), so the fused gradients are judged against float64, within float32's reach there
        # (the NCHW float32 network itself was 9.2e-4 off float64 after a shrink step).
        passed = all(r["same_grad_keys"] and max(r["logits"], r["iim"]) <= tolerance
                     and r["fused_vs_fp64"]["grads"] <= 10 * tolerance for r in rows)
    return {"tolerance": tolerance, "passed": passed, "memory_format": "channels_last" if channels_last else "NCHW",
            "judged_against": "unfused" if exact is None else "float64 (gradients), unfused (logits, IIM)",
            "masks": rows}


def correctness_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"passed: {result['passed']} (tolerance {result['tolerance']} of the largest value, TF32 off, "
             f"{result['memory_format']}, judged against {result['judged_against']})", "",
             "| mask | logits | grads | IIM | worst gradients (fused vs unfused) |", "|---|---|---|---|---|"]
    lines += [f"| {r['mask']} | {r['logits']:.1e} | {r['grads']:.1e} | {r['iim']:.1e} | "
              f"{', '.join(r['worst_fused_vs_unfused'])} |" for r in result["masks"]]
    if "fused_vs_fp64" in result["masks"][0]:
        lines += ["", "Against the unfused network in float64 on the CPU:", "",
                  "| mask | net | logits | grads | worst gradients |", "|---|---|---|---|---|"]
        lines += [f"| {r['mask']} | {who} | {r[who + '_vs_fp64']['logits']:.1e} | {r[who + '_vs_fp64']['grads']:.1e} "
                  f"| {', '.join(r[who + '_vs_fp64']['worst'])} |"
                  for r in result["masks"] for who in ("fused", "unfused")]
    return lines


# ----------------------------------------------------------------- 2. levers
class Timer:
    """Device time of a run of steps: CUDA events on a GPU (no host stalls between steps), wall time on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def seconds(self, work: Callable[[], None]) -> float:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            work()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        synchronize(self.device)
        began = time.perf_counter()
        work()
        synchronize(self.device)
        return time.perf_counter() - began


def measure_lever(space: str, name: str, size: Size, device: torch.device, backend: str) -> dict[str, Any]:
    """images/s of the real IS-DARTS weight step (`method.train_step`) with one lever setting."""
    cfg = search_cfg(space, size, device, **LEVERS[name])
    make_deterministic(0)
    method = build_method(cfg, 10, device, make_generator(torch.device("cpu"), 2))
    plan = dataclasses.replace(resolve_speed(cfg, device), compile_backend=backend)
    if plan.compile and backend != "inductor":
        method.model.forward = FastForward(method.model, plan)
    batch = cfg.batch_size
    x, y = random_batch(batch, device)
    method.set_epoch(0)
    # As the search loop runs it: replayed as a CUDA graph where the lever says so (warm-up: eager, capture).
    step = BatchGraph(method.train_step, plan.cuda_graphs)
    timer = Timer(device)
    warm = timer.seconds(lambda: [step(x, y) for _ in range(max(2, size.warmup))])
    timed = timer.seconds(lambda: [step(x, y) for _ in range(size.steps)])
    return {"images_per_s": batch * size.steps / timed, "warmup_s": warm, "plan": dataclasses.asdict(plan),
            "compile_backend": backend if plan.compile else None}


def measure_iim_cost(space: str, size: Size, device: torch.device) -> dict[str, Any]:
    """The IIM pass against a no-grad eval forward over the same batches, at full mask, as the search runs it."""
    cfg = search_cfg(space, size, device)
    method = build_method(cfg, 10, device, make_generator(torch.device("cpu"), 2))
    model, batches = method.model, [random_batch(cfg.batch_size, device, seed=s) for s in range(size.steps)]
    timer = Timer(device)

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            for x, _ in batches:
                model(x)
        model.train()

    eager_table = _stacked(measure_iim(model, batches[:1]))  # also the warm-up
    forward()
    iim, plain = timer.seconds(lambda: measure_iim(model, batches)), timer.seconds(forward)
    result = {"iim_s": iim, "forward_s": plain, "ratio": iim / plain}
    # compile_iim: the search refuses it on CUDA until this shows it right and fast there.
    # Compiles, or falls back to eager with a warning.
    compiled_table = _stacked(measure_iim(model, batches[:1], compiled=True))
    compiled = timer.seconds(lambda: measure_iim(model, batches, compiled=True))
    result.update(compiled_iim_s=compiled, compiled_ratio=compiled / plain,
                  compiled_fell_back=iim_reduction(True).failed,
                  compiled_rel_diff=_relative_error(*(t.nan_to_num(nan=0.0, posinf=float("inf"))
                                                      for t in (compiled_table, eager_table))))
    return result


def run_levers(space: str, size: Size, device: torch.device, budget: Budget, backend: str,
               compile_guess_s: float, names: tuple[str, ...] = tuple(LEVERS), iim: bool = True) -> dict[str, Any]:
    """images/s per lever in `names`; a lever that fails is recorded as failed and the others still run."""
    results: dict[str, Any] = {}
    compile_s = compile_guess_s
    for name in names:
        lever = LEVERS[name]
        if name in CUDA_ONLY and device.type != "cuda":
            continue  # a CUDA feature: nothing to measure on CPU
        if lever["compile"] and space not in size.compile_spaces:
            results[name] = {"skipped": "not in this mode"}
            continue
        need = 2 * compile_s if lever["compile"] else 10.0
        if not budget.allows(need):
            results[name] = {"skipped": f"budget: {budget.left():.0f} s left, about {need:.0f} s needed"}
            continue
        try:
            results[name] = measure_lever(space, name, size, device, backend)
        except Exception as exc:  # a GPU check runs once: keep the other levers' numbers
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": traceback.format_exc()}
            continue
        if lever["compile"]:
            compile_s = max(results[name]["warmup_s"], 1.0)
    if iim and budget.allows(10.0):
        results["iim_pass"] = measure_iim_cost(space, size, device)
    return results


def lever_lines(space: str, results: dict[str, Any], base: float | None = None) -> list[str]:
    """The levers table; `base` is eager's images/s where eager ran in another section."""
    base = results.get("eager", {}).get("images_per_s", base)
    lines = ["| lever | images/s | vs eager | warm-up s |", "|---|---|---|---|"]
    for name, r in results.items():
        if name == "iim_pass":
            continue
        if "skipped" in r:
            lines.append(f"| {name} | skipped ({r['skipped']}) | | |")
            continue
        if "error" in r:
            lines.append(f"| {name} | FAILED: {r['error'].splitlines()[0][:300]} | | |")
            continue
        ratio = f"{r['images_per_s'] / base:.2f}x" if base else ""
        lines.append(f"| {name} | {r['images_per_s']:.0f} | {ratio} | {r['warmup_s']:.1f} |")
    if "iim_pass" in results:
        r = results["iim_pass"]
        lines += ["", f"IIM pass / no-grad forward ({space}, full mask): {r['ratio']:.2f}x "
                      f"({r['iim_s']:.3f} s vs {r['forward_s']:.3f} s); with compile_iim "
                      f"{r['compiled_ratio']:.2f}x ({r['compiled_iim_s']:.3f} s, IIM tables "
                      f"{r['compiled_rel_diff']:.1e} from eager"
                      f"{', FELL BACK TO EAGER' if r['compiled_fell_back'] else ''})"]
    return lines


# ----------------------------------------------------------------- 2b. CUDA graphs
def _eager_method(space: str, size: Size, device: torch.device) -> Any:
    """The IS-DARTS method at paper size, channels-last float32 and eager: what the graphs capture."""
    cfg = search_cfg(space, size, device, channels_last=True, amp=False, compile=False, cudnn_benchmark=False)
    make_deterministic(0)
    method = build_method(cfg, 10, device, make_generator(torch.device("cpu"), 2))
    method.set_epoch(0)
    return method


def profile_step(space: str, size: Size, device: torch.device) -> dict[str, Any]:
    """Where an eager weight step's time goes: the host's time to issue it against the device's time to run
    it, and how many kernels it launches (a host-bound step is what CUDA graphs remove)."""
    method = _eager_method(space, size, device)
    x, y = random_batch(method.cfg.batch_size, device)
    for _ in range(size.warmup):
        method.train_step(x, y)
    synchronize(device)
    steps = size.steps
    began = time.perf_counter()
    for _ in range(steps):
        method.train_step(x, y)
    issued = time.perf_counter() - began
    synchronize(device)
    total = time.perf_counter() - began
    result: dict[str, Any] = {"host_issue_ms": 1e3 * issued / steps, "wall_ms": 1e3 * total / steps,
                              "batch_size": method.cfg.batch_size}
    try:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            method.train_step(x, y)
            synchronize(device)
        events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        result["kernels_per_step"] = len(events)
        result["device_busy_ms"] = sum(e.device_time for e in events) / 1e3
    except Exception as exc:  # the profiler needs CUPTI, which a sandbox may refuse: the timings above still hold
        result["profiler_error"] = f"{type(exc).__name__}: {exc}"[:500]
    return result


def profile_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"eager weight step: host issues it in {result['host_issue_ms']:.1f} ms, it completes in "
             f"{result['wall_ms']:.1f} ms per step"]
    if "kernels_per_step" in result:
        lines.append(f"{result['kernels_per_step']} kernels per step, device busy {result['device_busy_ms']:.1f} ms")
    else:
        lines.append(f"profiler unavailable: {result.get('profiler_error')}")
    return lines


def _params(method: Any) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in method.model.parameters()])


def measure_graphs(space: str, size: Size, device: torch.device) -> dict[str, Any]:
    """The search's CUDA graphs (isdarts.train.graphs, as the search loop and the IIM use them) against
    eager: equal results, and the time per batch of the weight step and the IIM pass at the full mask."""
    batch = getattr(size, space)["batch_size"]
    batches = [random_batch(batch, device, seed=10 + s) for s in range(size.steps)]
    timer = Timer(device)
    result: dict[str, Any] = {"batch_size": batch}

    # The weight step: two identically built methods, one eager, one replaying its captured step; the
    # first batch of a BatchGraph runs eager, the second is captured, so both see the same six steps.
    eager, graphed = _eager_method(space, size, device), _eager_method(space, size, device)
    began = time.perf_counter()
    step = BatchGraph(graphed.train_step, True)
    for x, y in batches[:6]:
        eager.train_step(x, y)
        step(x, y)
    result["capture_s"] = time.perf_counter() - began
    a, b = _params(eager), _params(graphed)
    result["step_params_rel_diff"] = float((a - b).abs().max() / a.abs().max())

    def run_eager() -> None:
        for x, y in batches:
            eager.train_step(x, y)

    def run_graphed() -> None:
        for x, y in batches:
            step(x, y)

    run_eager()
    run_graphed()
    result["step_eager_ms"] = 1e3 * timer.seconds(run_eager) / len(batches)
    result["step_graph_ms"] = 1e3 * timer.seconds(run_graphed) / len(batches)

    # The IIM pass as IS-DARTS runs it, graphed and eager, on the same batches.
    model = graphed.model
    expected, got = measure_iim(model, batches), measure_iim(model, batches, graphs=True)
    pairs = [(got[k], expected[k]) for k in expected]
    result["iim_rel_diff"] = max(_relative_error(*(t.nan_to_num(nan=0.0, posinf=float("inf")) for t in pair))
                                 for pair in pairs)
    result["iim_eager_ms"] = 1e3 * timer.seconds(lambda: measure_iim(model, batches)) / len(batches)
    result["iim_graph_ms"] = 1e3 * timer.seconds(lambda: measure_iim(model, batches, graphs=True)) / len(batches)
    model.eval()
    with torch.no_grad():
        forward = BatchGraph(lambda x: model(x), True)
        for x, _ in batches[:2]:  # eager, then captured
            forward(x)
        result["forward_graph_ms"] = 1e3 * timer.seconds(lambda: [forward(x) for x, _ in batches]) / len(batches)
    model.train()
    result.update(_graphed_estimate(space, result))
    return result


def _graphed_estimate(space: str, r: dict[str, Any]) -> dict[str, Any]:
    """A paper search's minutes if every batch ran as these graphs at the full mask's cost: per epoch the
    weight steps on 50,000 images (DARTS space: 50,000 minus the 10,000-image IIM holdout), the IIM pass
    (NB201: all 50,000 every epoch; DARTS space: the holdout) and the test set's forward."""
    batches = PAPER_TRAIN // 64
    if space == "nb201":
        epoch_ms = batches * (r["step_graph_ms"] + r["iim_graph_ms"]) + PAPER_TEST // 64 * r["forward_graph_ms"]
    else:
        holdout = 10_000 // 64
        epoch_ms = (batches - holdout) * r["step_graph_ms"] + holdout * r["iim_graph_ms"] \
            + PAPER_TEST // 64 * r["forward_graph_ms"]
    return {"graphed_epoch_s": epoch_ms / 1e3, "graphed_search_min": PAPER_EPOCHS[space] * epoch_ms / 6e4}


def graphs_lines(space: str, r: dict[str, Any]) -> list[str]:
    return [
        "| per batch of 64 | eager ms | CUDA graph ms | speed-up |", "|---|---|---|---|",
        f"| weight step | {r['step_eager_ms']:.2f} | {r['step_graph_ms']:.2f} | "
        f"{r['step_eager_ms'] / r['step_graph_ms']:.1f}x |",
        f"| IIM pass | {r['iim_eager_ms']:.2f} | {r['iim_graph_ms']:.2f} | "
        f"{r['iim_eager_ms'] / r['iim_graph_ms']:.1f}x |",
        f"| no-grad forward | | {r['forward_graph_ms']:.2f} | |", "",
        f"graphed = eager: parameters after 6 steps differ by {r['step_params_rel_diff']:.1e} (relative), IIM tables "
        f"by {r['iim_rel_diff']:.1e}; those 6 steps of both, capture included, {r['capture_s']:.1f} s; each IIM "
        "pass captures its graph anew, as in a search",
        f"IIM pass / no-grad forward, both graphed: {r['iim_graph_ms'] / r['forward_graph_ms']:.2f}x",
        f"a {PAPER_EPOCHS[space]}-epoch paper search with every batch graphed at the full mask's cost: "
        f"{r['graphed_epoch_s']:.1f} s per epoch, **{r['graphed_search_min']:.1f} min** (estimate from these "
        "per-batch times, not a timed search)",
    ]


# ----------------------------------------------------------------- 3. timed search
def timed_search(cfg: SearchConfig, arrays: CifarArrays, device: torch.device, epochs: int) -> list[dict[str, Any]]:
    """`epochs` epochs of the real search loop (run_search, then stopped as a kill would); their records."""
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as ckpt:
        run = SearchRun(cfg, 0, profile="gpu_check", device=str(device), data_kind="subset",
                        data_fingerprint="gpu-check-tiled-subset", checkpoint_dir=Path(ckpt))
        run_search(run, arrays, progress=False, stop_after_epochs=epochs, on_epoch=records.append)
    keep = ("epoch", "epoch_seconds", "images_per_s", "train_loss", "test_acc")
    return [{k: r[k] for k in keep} for r in records]


def extrapolate(records: list[dict[str, Any]], total_epochs: int, shrink_steps: int, compiled: bool,
                scale: float = 1.0) -> dict[str, Any]:
    """A full search's seconds from a few epochs, as an upper bound: every epoch at the full mask's cost.

    The first epoch carries the compile warm-up; each shrink step compiles again (a new mask), counted at
    that warm-up. `scale` stretches a shortened epoch to the full training set.
    """
    first = records[0]["epoch_seconds"] * scale
    steady = min(r["epoch_seconds"] for r in records[1:]) * scale if len(records) > 1 else first
    warmup = max(0.0, first - steady) if compiled else 0.0
    total = first + (total_epochs - 1) * steady + shrink_steps * warmup
    return {"first_epoch_s": first, "steady_epoch_s": steady, "recompile_s_each": warmup,
            "epochs": total_epochs, "estimate_s": total, "estimate_min": total / 60.0}


def _affordable(space: str, size: Size, device: torch.device, budget: Budget, need_s: float,
                compile_s: float) -> tuple[SearchConfig, str | None]:
    """The `auto` search config, with compilation turned off when the budget cannot also pay for compiling."""
    extra = {"train_images": size.darts_train_images + size.darts_holdout} if space == "darts" else {}
    cfg = search_cfg(space, size, device, **extra)
    if resolve_speed(cfg, device).compile and not budget.allows(need_s + compile_s):
        return dataclasses.replace(cfg, compile=False), f"compile off: {budget.left():.0f} s left"
    return cfg, None


def _affordable_epochs(size: Size, budget: Budget, images_per_s: float | None) -> int:
    """How many NB201 search epochs the budget pays for (at least one), judged from the best training rate
    measured so far: an epoch trains on every image and then runs the IIM over all of them (about the cost
    of training again, for a forward pass that also reduces every op output)."""
    if not images_per_s:
        return 1  # nothing measured to judge by: the least that still times a whole epoch
    epoch_s = 2.0 * size.train_images / images_per_s
    return max(1, min(size.search_epochs, int((budget.left() - 30.0) // epoch_s)))


def best_rate(sections: dict[str, Any]) -> float | None:
    """The fastest NB201 training rate measured so far (the profiled eager step, levers, CUDA graphs), images/s."""
    levers = sections.get("levers nb201", {})
    rates = [r["images_per_s"] for name, r in levers.items() if name in ("combined", "eager") and "images_per_s" in r]
    profile = sections.get("profile nb201", {})
    if "wall_ms" in profile:
        rates.append(profile["batch_size"] * 1e3 / profile["wall_ms"])
    graphs = sections.get("graphs nb201", {})
    if "step_graph_ms" in graphs:
        rates.append(graphs["batch_size"] * 1e3 / graphs["step_graph_ms"])
    return max(rates) if rates else None


def run_searches(size: Size, arrays: CifarArrays, device: torch.device, budget: Budget,
                 compile_s: dict[str, float], images_per_s: float | None, compile_search: bool = True
                 ) -> dict[str, Any]:
    """The NB201 search extrapolated to 30 epochs, then the DARTS-space one to 50; `compile_s` per space is
    what one compile is expected to take and `images_per_s` the best NB201 training rate measured so far."""
    if not budget.allows(60.0 if size is PAPER_SIZE else 5.0):
        return {"nb201": {"skipped": f"budget: {budget.left():.0f} s left"}, "darts": {"skipped": "budget"}}
    results: dict[str, Any] = {}
    nb201, note = _affordable("nb201", size, device, budget, 60.0, compile_s["nb201"])
    if not compile_search:
        nb201, note = dataclasses.replace(nb201, compile=False), "compile off (--no-compile)"
    plan = resolve_speed(nb201, device)
    epochs = _affordable_epochs(size, budget, images_per_s)
    try:
        records = timed_search(nb201, arrays, device, epochs)
    except Exception as exc:
        if not plan.compile:
            raise
        # The search's number is this check's main result: time it eager rather than lose it.
        results["nb201 compiled"] = {"error": f"{type(exc).__name__}: {exc}"[:2000],
                                     "traceback": traceback.format_exc()}
        nb201 = dataclasses.replace(nb201, compile=False)
        note = f"compile off: the compiled search failed ({exc!r:.200})"
        plan = resolve_speed(nb201, device)
        records = timed_search(nb201, arrays, device, epochs)
    results["nb201"] = {"plan": dataclasses.asdict(plan), "note": note, "records": records,
                        **extrapolate(records, PAPER_EPOCHS["nb201"], nb201.shrink.steps, plan.compile)}
    # Two DARTS-space epochs on a few thousand images: judged from NB201's epoch, the DARTS net being ~3x dearer.
    need = 2 * 3 * results["nb201"]["steady_epoch_s"] * size.darts_train_images / size.train_images + 20
    if not budget.allows(need):
        results["darts"] = {"skipped": f"budget: {budget.left():.0f} s left, about {need:.0f} s needed"}
        return results
    darts, note = _affordable("darts", size, device, budget, need, compile_s["darts"])
    if not compile_search:
        darts, note = dataclasses.replace(darts, compile=False), "compile off (--no-compile)"
    plan = resolve_speed(darts, device)
    records = timed_search(darts, arrays, device, 2)
    # The timed epochs train on darts_train_images; a paper epoch trains on 50,000 minus the holdout.
    steady = records[-1]
    train_s = size.darts_train_images / steady["images_per_s"]
    full_train_s = (size.train_images - size.darts_holdout) / steady["images_per_s"]
    overhead = steady["epoch_seconds"] - train_s  # evaluation on the full test set and the IIM on the holdout
    epoch_s = full_train_s + overhead
    warmup = max(0.0, records[0]["epoch_seconds"] - steady["epoch_seconds"]) if plan.compile else 0.0
    total = PAPER_EPOCHS["darts"] * epoch_s + (darts.shrink.steps + 1) * warmup
    results["darts"] = {
        "plan": dataclasses.asdict(plan), "note": note, "records": records,
        "timed_train_images": size.darts_train_images, "epoch_s_at_paper_size": epoch_s, "recompile_s_each": warmup,
        "epochs": PAPER_EPOCHS["darts"], "estimate_s": total, "estimate_min": total / 60.0,
    }
    return results


def compile_estimates(report: Report, guess: float) -> dict[str, float]:
    """Seconds one compile takes per space: the NB201 levers' measured warm-up, the DARTS space twice that."""
    levers = report.data["sections"].get("levers nb201", {})
    measured = [r["warmup_s"] for name, r in levers.items() if name in ("compile", "combined") and "warmup_s" in r]
    nb201 = max(measured) if measured else guess
    return {"nb201": nb201, "darts": 2 * nb201}


def search_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    nb = results["nb201"]
    if "skipped" in nb:
        return [f"skipped ({nb['skipped']})"]
    lines.append(f"NB201 IS-DARTS, paper settings, {len(nb['records'])} epochs run with speed plan {nb['plan']}"
                 f"{' (' + nb['note'] + ')' if nb['note'] else ''}: "
                 f"first epoch {nb['first_epoch_s']:.1f} s, steady {nb['steady_epoch_s']:.1f} s; "
                 f"30-epoch search estimated at **{nb['estimate_min']:.1f} min** (upper bound: full-mask cost "
                 f"every epoch; target <= 10 min on H100/H200)")
    da = results["darts"]
    if "skipped" in da:
        lines.append(f"DARTS space: skipped ({da['skipped']})")
    else:
        lines.append(f"DARTS-space IS-DARTS, paper settings, 2 epochs on {da['timed_train_images']:,} images "
                     f"with speed plan {da['plan']}{' (' + da['note'] + ')' if da['note'] else ''}: "
                     f"{da['epoch_s_at_paper_size']:.1f} s per 50,000-image epoch; "
                     f"50-epoch search estimated at **{da['estimate_min']:.1f} min**")
    return lines


# ----------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="cifar-10-batches-py or the folder holding it")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cpu-tiny", action="store_true", help="tiny sizes on CPU (CI)")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--compile-backend", default=None, help="default inductor; aot_eager with --cpu-tiny")
    parser.add_argument("--no-compile", action="store_true", help="time the searches without torch.compile")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated, run in the fixed order "
                        f"{', '.join(SECTIONS)} (graphs: CUDA only)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    budget = Budget(args.budget_s)
    device = torch.device("cpu") if args.cpu_tiny else resolve_device(args.device)
    size = TINY_SIZE if args.cpu_tiny else PAPER_SIZE
    backend = args.compile_backend or ("aot_eager" if args.cpu_tiny else "inductor")
    if args.cpu_tiny:
        torch.set_num_threads(1)
    arrays, note = tiled_arrays(args.data, size)
    report = Report(args.out, {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device_name": describe_device(device),
        "torch": torch.__version__, "mode": "cpu-tiny" if args.cpu_tiny else "paper size", "data_note": note,
        "budget_s": args.budget_s, "compile_backend": backend,
    })
    wanted = set(args.sections.split(","))
    unknown = wanted - set(SECTIONS)
    if unknown:
        parser.error(f"unknown --sections {', '.join(sorted(unknown))}; expected some of {', '.join(SECTIONS)}")
    cuda = device.type == "cuda"
    if "correctness" in wanted:
        for space in ("nb201", "darts"):
            report.run(f"correctness {space}", lambda sp=space: check_correctness(sp, size, device, 1e-3),
                       correctness_lines)
        if cuda:  # NB201 runs channels-last on CUDA: NCHW too, to tell a memory-format fault from the rest
            report.run("correctness nb201 NCHW", lambda: check_correctness("nb201", size, device, 1e-3, False),
                       correctness_lines)
    if "profile" in wanted and budget.allows(20.0):
        report.run("profile nb201", lambda: profile_step("nb201", size, device), profile_lines)
    if "graphs" in wanted and cuda:
        for space in ("nb201", "darts"):
            if budget.allows(30.0):
                report.run(f"graphs {space}", lambda sp=space: measure_graphs(sp, size, device),
                           lambda r, sp=space: graphs_lines(sp, r))
    guess = 20.0 if args.cpu_tiny else 90.0  # seconds one compile takes, until one is measured
    if "search" in wanted:
        report.run("search", lambda: run_searches(size, arrays, device, budget, compile_estimates(report, guess),
                                                  best_rate(report.data["sections"]), not args.no_compile),
                   search_lines)
    if "levers" in wanted:
        report.run("levers nb201", lambda: run_levers("nb201", size, device, budget, backend, guess, NB201_FIRST),
                   lambda r: lever_lines("nb201", r))
        eager = report.data["sections"]["levers nb201"].get("eager", {}).get("images_per_s")
        later = tuple(name for name in LEVERS if name not in NB201_FIRST)
        report.run("levers nb201, compiled", lambda: run_levers("nb201", size, device, budget, backend, guess, later,
                                                                iim=False),
                   lambda r: lever_lines("nb201", r, eager))
        report.run("levers darts", lambda: run_levers("darts", size, device, budget, backend, 2 * guess),
                   lambda r: lever_lines("darts", r))
    report.data["wall_s"] = time.monotonic() - started
    report.write()
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
