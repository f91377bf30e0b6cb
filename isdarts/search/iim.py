"""Information-based importance measurement (IIM) of candidate-op outputs (spec §3.2).

The official code hooks every candidate op and scores its output X (B, C, H, W) by
    F = 3 (X - mu)^2 / sigma^6,  mu, sigma = mean and unbiased std over channels per (sample, pixel),
with NaN (0/0 at pixels where all channels agree) replaced by +inf, averaged over (C, H, W) per sample
and over samples. That is a Fisher-information-like quantity: large means unimportant, and the
largest is pruned first (the paper's IIM is its inverse).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence

import torch
from torch import nn

from isdarts.search.base import Batches
from isdarts.spaces.common import Candidate, OpProbe
from isdarts.train.graphs import BatchGraph

log = logging.getLogger(__name__)


def iim_per_sample(x: torch.Tensor) -> torch.Tensor:
    """The hooked IIM value of each sample of op outputs, as float32: (B, C, H, W) -> (B,), or for k
    stacked outputs (B, k, C, H, W) -> (B, k), one reduction for all k.

    Summing (X - mu)^2 over channels gives sigma^2 (C - 1) exactly, so the channel mean of F is
    3 (C - 1) / (C sigma^4): computed that way we never build the full F tensor. A zero-variance pixel
    gives 1/0 = +inf, the same as the code's NaN -> inf.
    """
    _check_rank(x)
    return _iim_per_sample(x)


def _check_rank(x: torch.Tensor) -> None:
    if x.dim() not in (4, 5):
        raise ValueError(f"IIM expects (B, C, H, W) or stacked (B, k, C, H, W) op outputs, got {tuple(x.shape)}")


def _iim_per_sample(x: torch.Tensor) -> torch.Tensor:
    channel_dim = x.dim() - 3
    channels = x.shape[channel_dim]
    x = x.float()
    # Two passes (centre, then square) so that channels which agree give exactly zero variance. Squaring
    # in place saves a tensor the size of the op outputs: on CPU that allocation cost more than the maths.
    centred = x - x.mean(dim=channel_dim, keepdim=True)
    var = centred.square_().sum(dim=channel_dim) / (channels - 1)
    per_pixel = (3.0 * (channels - 1) / channels) / var.square()
    # A non-finite input gives NaN variance; like the code's 0/0, count it as the least important.
    per_pixel = per_pixel.nan_to_num_(nan=float("inf"), posinf=float("inf"))
    return per_pixel.mean(dim=(-2, -1))


def iim_batch_sums(x: torch.Tensor) -> torch.Tensor:
    """`iim_per_sample` summed over the batch in float64: (k,) for k stacked outputs, () for one."""
    _check_rank(x)
    return _iim_batch_sums(x)


def _iim_batch_sums(x: torch.Tensor) -> torch.Tensor:
    return _iim_per_sample(x).sum(dim=0, dtype=torch.float64)


class CompiledIim:
    """`iim_batch_sums` as compiled kernels: the `compile_iim` speed setting (isdarts.search.speed).

    Eagerly, each op output is read four times and written twice (mean, subtract, square, sum); compiled,
    the centring and squaring happen in registers between two reads: on this CPU 2-4x faster on one large
    output and 1.5x over a whole NB201 pass (68 -> 44 ms per 64 images at C=16, N=5). The values agree
    with eager ones to float32 rounding (the sums run in another order), not bit for bit. Compiled for
    dynamic shapes, so the many op-output shapes of a supernet share a few kernels. If compilation fails
    (on CPU inductor needs a C++ compiler), it warns once and measures eagerly from then on.
    """

    def __init__(self, backend: str = "inductor") -> None:
        self.compiled = torch.compile(_iim_batch_sums, backend=backend, dynamic=True)  # compiles at first call
        self.failed = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return iim_batch_sums(x)
        _check_rank(x)  # before compiling: a bad shape is the caller's error, not a compiler failure
        try:
            return self.compiled(x)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: the eager reduction gives the same numbers
            self.failed = True
            cause = getattr(exc, "inner_exception", None) or exc  # dynamo wraps the compiler's own error
            first_line = (str(cause).strip().splitlines() or [""])[0]
            log.warning(
                "compile_iim: compiling the IIM reduction failed (%s: %s); measuring eagerly instead. Set "
                "compile_iim to false to skip the attempt.", type(cause).__name__, first_line,
            )
            return iim_batch_sums(x)


_compiled_iim: CompiledIim | None = None


def iim_reduction(compiled: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The IIM reduction a pass uses (op outputs -> batch sums); the compiled one is shared by the whole
    process, so it compiles once per search, not once per IIM pass."""
    global _compiled_iim
    if not compiled:
        return iim_batch_sums
    if _compiled_iim is None:
        _compiled_iim = CompiledIim()
    return _compiled_iim


class IimAccumulator:
    """Running sample-weighted mean of the IIM per (cell, edge, op), kept on the device.

    The supernet's op probe (`isdarts.spaces.common.OpProbe`); cells are numbered 0..num_cells-1. Stacked
    outputs are reduced in one call and scattered by index, and nothing is copied to the host until
    `per_cell()` is read.
    """

    def __init__(
        self, num_cells: int, num_edges: int, num_ops: int, device: torch.device,
        reduce: Callable[[torch.Tensor], torch.Tensor] = iim_batch_sums,
    ) -> None:
        self.reduce = reduce
        self.sums = torch.zeros(num_cells, num_edges, num_ops, dtype=torch.float64, device=device)
        self.counts = torch.zeros(num_cells, num_edges, num_ops, dtype=torch.float64, device=device)
        self._index: dict[tuple[int, tuple[Candidate, ...]], torch.Tensor] = {}

    def outputs(self, cell: Hashable, candidates: Sequence[Candidate], stacked: torch.Tensor) -> None:
        values = self.reduce(stacked)  # (k,) batch sums; (1,) for an output several candidates share
        self._add(cell, candidates, values.expand(len(candidates)), stacked.shape[0])

    def zeros(self, cell: Hashable, candidates: Sequence[Candidate], batch: int) -> None:
        # Exact zeros have zero variance everywhere: +inf, as `iim_per_sample` gives for them.
        self._add(cell, candidates, self.sums.new_full((len(candidates),), float("inf")), batch)

    def _add(self, cell: Hashable, candidates: Sequence[Candidate], sums: torch.Tensor, batch: int) -> None:
        index = self._flat_index(int(cell), tuple(candidates))
        self.sums.view(-1).index_add_(0, index, sums)
        self.counts.view(-1).index_add_(0, index, sums.new_full(sums.shape, float(batch)))

    def _flat_index(self, cell: int, candidates: tuple[Candidate, ...]) -> torch.Tensor:
        """Flat (cell, edge, op) positions, built once per candidate list: a mask state has few of them."""
        key = (cell, candidates)
        if key not in self._index:
            _, edges, ops = self.sums.shape
            flat = [(cell * edges + e) * ops + o for e, o in candidates]
            self._index[key] = torch.tensor(flat, dtype=torch.long, device=self.sums.device)
        return self._index[key]

    def per_cell(self) -> torch.Tensor:
        """(cells, edges, ops) mean IIM; NaN where an op was never measured (masked out)."""
        return self.sums / self.counts


class _PerKindProbe:
    """The supernets' probe: cells are named (kind, index); each kind has its own accumulator."""

    def __init__(self, accs: dict[str, IimAccumulator]) -> None:
        self.accs = accs

    def outputs(self, cell: Hashable, candidates: Sequence[Candidate], stacked: torch.Tensor) -> None:
        kind, index = cell
        self.accs[kind].outputs(index, candidates, stacked)

    def zeros(self, cell: Hashable, candidates: Sequence[Candidate], batch: int) -> None:
        kind, index = cell
        self.accs[kind].zeros(index, candidates, batch)


def aggregate_cells(per_cell: torch.Tensor) -> torch.Tensor:
    """Plain mean over the cells that share the encoding (spec §3.2); one inf makes the entry inf."""
    return per_cell.mean(dim=0)


@torch.no_grad()
def run_probe_pass(model: nn.Module, batches: Batches, probe: OpProbe, graphs: bool = False) -> int:
    """Forward every batch with `probe` on each op output; returns the number of samples seen.

    Runs in eval mode (spec §8): cell BNs, built without running stats, still normalise with batch
    statistics, while stem, head and residual-block BNs use their running statistics, which this pass
    must not change. The caller's train/eval mode is restored. With `graphs` the batches are replayed as
    one CUDA graph: the probe adds into device tensors in place, which a replay repeats.
    """
    was_training = model.training
    model.eval()
    forward = BatchGraph(lambda x: model(x, probe=probe), graphs)
    seen = 0
    try:
        for x, _ in batches:
            forward(x)
            seen += x.shape[0]
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("IIM measurement got no samples; check iim.n_samples and the data size")
    return seen


def measure_iim(
    model: nn.Module, batches: Batches, graphs: bool = False, compiled: bool = False
) -> dict[str, torch.Tensor]:
    """The (edges, ops) IIM table of each cell kind of a supernet, {kind: table}; masked entries are NaN.

    One accumulator per kind, averaged over that kind's cells (spec §3.2), all measured in one eval-mode
    pass. `graphs` and `compiled` are the `cuda_graphs` and `compile_iim` speed settings.
    """
    reduce = iim_reduction(compiled)
    masks = {kind: model.get_mask(kind) for kind in model.KINDS}
    accs = {
        kind: IimAccumulator(model.num_cells(kind), *mask.shape, mask.device, reduce) for kind, mask in masks.items()
    }
    run_probe_pass(model, batches, _PerKindProbe(accs), graphs)
    return {
        kind: aggregate_cells(acc.per_cell()).masked_fill(masks[kind] == 0, float("nan")) for kind, acc in accs.items()
    }
