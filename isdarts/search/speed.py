"""The GPU fast path of a search: what each `auto` speed setting means on a space and device, and the one
place that applies bf16 autocast and torch.compile to a supernet.

- `channels_last`: on for the DARTS space on CPU (its depthwise convs ran about 4x faster channels-last)
  and for the fused supernets on CUDA; off for NB201 on CPU, where it measured no faster at full mask and
  0.97x on the single path. Never for the unfused supernets on CUDA: on an H200 (PyTorch 2.11, 2026-12-04)
  their channels-last gradients were wrong, up to 1.3x the largest gradient away from float64, while the
  fused ones agreed with float64 and both agreed in NCHW (scripts/gpu_check.py, BENCHMARKS.md).
- `amp`: bf16 autocast of the weight and α steps; on for CUDA devices with bf16, off on CPU. It changes a
  search's numbers, and CPU results must stay float32 unless asked. Asked (`amp: true`), a CPU with bf16
  instructions runs the NB201 training step in oneDNN's bf16 kernels at about 1.7x the float32 step (2.8x
  commit 9bd8fc1; AVX512-BF16, 2 threads, BENCHMARKS.md), while the DARTS space's depthwise convs ran
  slower in bf16 (0.84x); a CPU without them emulates bf16, so that case gets a warning.
- `compile`: `torch.compile` of the supernet's training forward; on for CUDA, off on CPU.
- `cudnn_benchmark`: cuDNN times its conv kernels once per shape (a search's shapes are static); on for
  CUDA, and meaningless on CPU.
- `cuda_graphs`: each batch's work replayed as one CUDA graph (isdarts.train.graphs): the weight steps of
  the methods without α, the IIM pass and the evaluation forward; on for CUDA, and refused on CPU.
- `compile_iim`: the IIM's per-pixel channel statistics as compiled kernels (isdarts.search.iim), which read
  each op output twice instead of four times: 1.5-4x faster reductions on this CPU, the same numbers to
  float rounding. Compiling costs 2-4 s per search with inductor's on-disk cache warm and about 15 s cold; at the
  paper's network and image size (C >= 16, 32x32) it saved 0.85 ms per IIM image on NB201 and 0.94 ms on the
  DARTS space, so one paper-setting search earns it back, while at the quick profile's C=8, 16x16 it saved
  0.04 ms per image, about 0.3 s per search. So `auto` is on for CPU searches that measure the IIM (IS-DARTS,
  I-DARTS) at C >= 16 and 32x32, off otherwise. Refused on CUDA, where it has not been run yet
  (scripts/gpu_check.py measures it there).

Only the training forward (train mode, no probe: the weight and α steps of every method) takes autocast
and compilation. The IIM pass and evaluation run in eval mode and in float32, with the supernet uncompiled
(replayed as CUDA graphs where `cuda_graphs` is on; only the IIM's reductions compiled where `compile_iim` is
on), so the IIM statistics are float32 sums over float32 op outputs whatever `amp` says. On CPU every
`auto` leaves the forward untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.errors import ConfigError
from isdarts.registry import space_spec

log = logging.getLogger(__name__)

AMP_DTYPE = torch.bfloat16
# Compiled graphs per code object before dynamo falls back to eager: a search compiles once per mask state
# (NB201 5, DARTS space 8, each with and without a probe-free α argument), so the default 8 is too few.
RECOMPILE_LIMIT = 64


@dataclass(frozen=True)
class SpeedPlan:
    """The resolved speed settings of one search on one device (no `auto` left)."""

    channels_last: bool
    amp: bool
    compile: bool
    cudnn_benchmark: bool
    cuda_graphs: bool = False
    compile_iim: bool = False
    compile_backend: str = "inductor"  # tests use "aot_eager": the same graph capture without code generation

    @property
    def changes_forward(self) -> bool:
        return self.amp or self.compile


def _bf16_ok(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX) rather than emulating it."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _paper_size_iim(cfg: SearchConfig) -> bool:
    """Whether `cfg` measures the IIM on op outputs large enough that compiling their reductions pays."""
    return cfg.iim is not None and cfg.C >= 16 and cfg.image_size == 32


def resolve_speed(cfg: SearchConfig, device: torch.device) -> SpeedPlan:
    """Replace every `auto` of `cfg`'s speed settings by what it means on `cfg.space` and `device`."""
    cuda = device.type == "cuda"
    space = space_spec(cfg.space).load()

    def pick(value: str | bool, auto: bool) -> bool:
        return auto if value == "auto" else bool(value)

    if not cuda and cfg.cuda_graphs is True:
        raise ConfigError(
            f"params.yaml: {cfg.space}.search: cuda_graphs = true needs a CUDA device, and this search runs on "
            f"{device.type}; set cuda_graphs to auto or false"
        )
    if cuda and cfg.channels_last is True and not cfg.fused_ops:
        raise ConfigError(
            f"params.yaml: {cfg.space}.search: channels_last = true with fused_ops = false gives wrong gradients "
            "on CUDA (the unfused ops' channels-last backward; see BENCHMARKS.md, GPU check); set channels_last "
            "to auto or false, or fused_ops to true"
        )
    if cuda and cfg.compile_iim is True:
        raise ConfigError(
            f"params.yaml: {cfg.space}.search: compile_iim = true has not been run on CUDA yet (the IIM pass there "
            "is replayed as a CUDA graph instead); set compile_iim to auto or false"
        )
    return SpeedPlan(
        channels_last=pick(cfg.channels_last, cfg.fused_ops if cuda else space.channels_last_on_cpu),
        amp=pick(cfg.amp, _bf16_ok(device)),
        compile=pick(cfg.compile, cuda),
        cudnn_benchmark=pick(cfg.cudnn_benchmark, cuda),
        cuda_graphs=pick(cfg.cuda_graphs, cuda),
        compile_iim=pick(cfg.compile_iim, not cuda and _paper_size_iim(cfg)),
    )


def configure_backends(plan: SpeedPlan) -> None:
    """The process-wide switches a plan needs; call after `make_deterministic`, which turns benchmark off.

    cuDNN stays in deterministic mode: benchmarking then times only the deterministic kernels.
    """
    torch.backends.cudnn.benchmark = plan.cudnn_benchmark
    if plan.compile or plan.compile_iim:
        import torch._dynamo.config as dynamo_config  # only when compiling: importing dynamo takes seconds

        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)


class FastForward:
    """A supernet's forward with the plan's autocast and compilation on its training calls.

    Installed as the module's own `forward`, so every method's steps (`model(x, weights=...)`, and the
    `functional_call` of second-order DARTS) go through it unchanged, and state dicts keep their keys.
    Dynamo guards on the supernet's host-side alive lists, so a shrink step recompiles rather than reuse a
    graph of the old mask. Only batches of the first training batch size are compiled: the smaller last
    batch of an epoch runs eager instead of doubling the graphs per mask state.
    """

    def __init__(self, model: nn.Module, plan: SpeedPlan) -> None:
        self.model, self.plan = model, plan
        self.eager = type(model).forward.__get__(model)
        self.compiled = (
            torch.compile(self.eager, backend=plan.compile_backend, dynamic=False) if plan.compile else self.eager
        )
        self.static_batch: int | None = None
        self.float32_only = False  # set by `full_precision` around finite-difference passes

    def __call__(self, x: torch.Tensor, weights: Any = None, probe: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        if probe is not None or not self.model.training:
            return self.eager(x, weights, probe)
        if self.static_batch is None:
            self.static_batch = x.shape[0]
        run = self.compiled if x.shape[0] == self.static_batch else self.eager
        with torch.autocast(x.device.type, dtype=AMP_DTYPE, enabled=self.plan.amp and not self.float32_only):
            features, logits = run(x, weights)
        # Losses, regularisers and optimisers downstream stay float32 (a no-op without autocast).
        return features.float(), logits.float()


@contextmanager
def full_precision(model: nn.Module) -> Iterator[None]:
    """Run the supernet's training forward in float32 inside this block, whatever `amp` says.

    For finite differences (DARTS 2nd order's Hessian-vector product, Λ-DARTS's perturbed passes): the
    difference of two nearby bf16 gradients is mostly rounding noise.
    """
    forward = model.__dict__.get("forward")
    if not isinstance(forward, FastForward):
        yield
        return
    before, forward.float32_only = forward.float32_only, True
    try:
        yield
    finally:
        forward.float32_only = before


def apply_speed(model: nn.Module, plan: SpeedPlan) -> nn.Module:
    """Move `model` to the plan's memory format and give it the fast forward if the plan changes it."""
    # Warned here, once per supernet, not in resolve_speed, which a search calls several times.
    if plan.amp and next(model.parameters()).device.type == "cpu" and not _cpu_has_bf16():
        log.warning(
            "amp = true on a CPU without bf16 instructions: oneDNN emulates bf16 there, which is usually slower "
            "than float32; set amp to auto or false"
        )
    model = model.to(memory_format=torch.channels_last if plan.channels_last else torch.contiguous_format)
    if plan.changes_forward:
        model.forward = FastForward(model, plan)
    return model
