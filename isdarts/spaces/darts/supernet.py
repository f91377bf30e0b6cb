"""The IS-DARTS search supernet of the DARTS space (spec §2, AutoDL "nasnet-super").

8 cells [N, N, R, N, N, R, N, N] at C=16; every cell holds all 8 ops on each of its 14 edges. Normal and
reduction cells each share one (14, 8) binary mask, kept as buffers so checkpoints carry them. Ops the
mask removes are never computed, and `none` (exact zeros) never: a probe (the IIM) is told it is zeros.

With `fused=True` (the default) a cell runs, per input state, each op kind once for all the edges that
leave it: one ReLU, one depthwise and one grouped pointwise conv (and one BN) per separable unit kind, one
FactorizedReduce conv pair, one shared pool and skip; `fused=False` runs every op as its own module, the
reference the fused path is tested against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from isdarts.errors import GenotypeError
from isdarts.spaces.auxiliary import auxiliary_modules, check_auxiliary, resolve_auxiliary
from isdarts.spaces.common import (
    Alive,
    Candidate,
    GroupRunner,
    NodeInputs,
    OpProbe,
    ReLUConvBN,
    SkipDropout,
    alive_ops,
    check_partial_channels,
    mix_cell,
    mix_cell_fused,
    mix_cell_partial,
    mix_cell_partial_fused,
    resolve_partial,
)
from isdarts.spaces.darts.genotype import DARTS_DEFAULT_CONCAT, DARTS_NUM_NODES, INPUTS_PER_NODE, Cell, DartsGenotype
from isdarts.spaces.darts.ops import DARTS_SEARCH_OPS, SEARCH_TO_EVAL, DilConv, FactorizedReduce, make_search_op
from isdarts.spaces.fused import (
    avg_pool_3x3,
    batch_norm_stacked,
    conv_shared,
    conv_stacked,
    repeat_blocks,
    split_blocks,
)

__all__ = [
    "CELL_KINDS",
    "DARTS_EDGES",
    "NONE_OP",
    "NUM_EDGES",
    "NUM_OPS",
    "DartsSearchCell",
    "DartsSupernet",
    "OpProbe",
    "darts_genotype_from_masks",
    "darts_node_subsets",
    "derive_darts_cell",
    "derive_darts_genotype",
]

CELL_KINDS: tuple[str, str] = ("normal", "reduce")
# Edge "i<-j": intermediate node i reads state j (0 = s0, 1 = s1, j >= 2 = node j-2); indexed in sorted key
# order, which (single digits) is node-major with j ascending.
DARTS_EDGES: tuple[str, ...] = tuple(sorted(f"{i}<-{j}" for i in range(DARTS_NUM_NODES) for j in range(2 + i)))
NUM_EDGES = len(DARTS_EDGES)
NUM_OPS = len(DARTS_SEARCH_OPS)
NONE_OP = DARTS_SEARCH_OPS.index("none")
SKIP_OP = DARTS_SEARCH_OPS.index("skip_connect")
AVG_POOL_OP = DARTS_SEARCH_OPS.index("avg_pool_3x3")
_SEP_OPS = frozenset(DARTS_SEARCH_OPS.index(name) for name in ("dua_sepc_3x3", "dua_sepc_5x5"))
_DIL_OPS = frozenset(DARTS_SEARCH_OPS.index(name) for name in ("dil_sepc_3x3", "dil_sepc_5x5"))
_EDGE_INPUT: tuple[int, ...] = tuple(int(key.split("<-")[1]) for key in DARTS_EDGES)
# (node i, [(input state j, edge index)]) in the order the cell computes them.
_NODE_INPUTS: tuple[tuple[int, NodeInputs], ...] = tuple(
    (i, tuple((j, DARTS_EDGES.index(f"{i}<-{j}")) for j in range(2 + i))) for i in range(DARTS_NUM_NODES)
)

# DARTS-style op weights per cell kind: one (14, 8) tensor shared by the kind's cells, or one per cell.
KindWeights = torch.Tensor | Sequence[torch.Tensor]


def darts_node_subsets() -> list[list[Candidate]]:
    """IS-DARTS comparison subsets: all (edge, op) entering node i, inputs ascending then ops (16/24/32/40)."""
    return [[(edge, o) for _, edge in inputs for o in range(NUM_OPS)] for _, inputs in _NODE_INPUTS]


def derive_darts_cell(weights: torch.Tensor) -> Cell:
    """The standard DARTS derivation of one cell from its (14, 8) op weights, in evaluation op names.

    Per node: rank its input edges by their largest non-`none` weight (stable, so ties go to the lower
    input j), keep the top 2, and on each the non-`none` op with the largest weight (ties: lower op index).
    The pairs are listed strongest edge first, as DARTS does. `none` is never picked.
    """
    rows = weights.detach().cpu().double().tolist()
    candidates = [o for o in range(NUM_OPS) if o != NONE_OP]
    nodes = []
    for _, inputs in _NODE_INPUTS:
        best = {edge: max(candidates, key=lambda o, e=edge: rows[e][o]) for _, edge in inputs}
        ranked = sorted(inputs, key=lambda je: -rows[je[1]][best[je[1]]])
        nodes.append(tuple((SEARCH_TO_EVAL[DARTS_SEARCH_OPS[best[edge]]], j) for j, edge in ranked[:INPUTS_PER_NODE]))
    return tuple(nodes)


def derive_darts_genotype(normal: torch.Tensor, reduce: torch.Tensor) -> DartsGenotype:
    """Both cells by `derive_darts_cell`, concatenating all four nodes."""
    concat = DARTS_DEFAULT_CONCAT
    return DartsGenotype(derive_darts_cell(normal), concat, derive_darts_cell(reduce), concat)


def darts_genotype_from_masks(masks: Mapping[str, torch.Tensor]) -> DartsGenotype:
    """The final genotype (spec §3.4) of {kind: (14, 8) 0/1 mask}: per node, the two surviving (op, input),
    in evaluation names; a GenotypeError unless exactly two survive in every node."""
    cells = {}
    for kind in CELL_KINDS:
        rows = masks[kind].detach().cpu().tolist()
        nodes = []
        for node, subset in enumerate(darts_node_subsets()):
            cands = [(DARTS_SEARCH_OPS[o], _EDGE_INPUT[e], rows[e][o]) for e, o in subset]
            # Stable sort on the descending mask, as the official code; with a 0/1 mask these are the survivors.
            ranked = sorted(cands, key=lambda c: -c[2])
            survivors = [(SEARCH_TO_EVAL[op], j) for op, j, m in ranked if m > 0.5]
            if len(survivors) != INPUTS_PER_NODE:
                raise GenotypeError(
                    f"{kind} node {node} has {len(survivors)} surviving (op, input) candidates, expected "
                    f"exactly 2 (finish shrinking first): {survivors}"
                )
            nodes.append(tuple(survivors))
        cells[kind] = tuple(nodes)
    return DartsGenotype(cells["normal"], DARTS_DEFAULT_CONCAT, cells["reduce"], DARTS_DEFAULT_CONCAT)


class DartsSearchCell(nn.Module):
    """Preprocessed inputs s0, s1 -> 4 nodes over 14 mixed edges -> concat of the 4 nodes (4C channels)."""

    def __init__(
        self,
        c_prev_prev: int,
        c_prev: int,
        c: int,
        *,
        reduction: bool,
        reduction_prev: bool,
        affine: bool,
        track: bool,
        fused: bool = True,
        partial_channels: int = 1,
    ) -> None:
        super().__init__()
        if fused and track:
            raise ValueError("fused cells need BNs without running statistics (track=False); pass fused=False")
        check_partial_channels([c], partial_channels)
        self.fused = fused
        self.partial_channels = partial_channels
        self.reduction = reduction
        self.kind = "reduce" if reduction else "normal"
        # In reduction cells only the edges from the cell inputs s0, s1 downsample.
        self.strides = tuple(2 if reduction and j < 2 else 1 for j in _EDGE_INPUT)
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, c, affine=affine, track=track)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=affine, track=track)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=affine, track=track)
        # With partial channels K the ops see c/K channels (isdarts.spaces.partial).
        op_channels = c // partial_channels
        self.edges = nn.ModuleList(
            nn.ModuleList(
                make_search_op(op, op_channels, stride, affine=affine, track=track) for op in DARTS_SEARCH_OPS
            )
            for stride in self.strides
        )
        self.channels, self.affine, self.track = c, affine, track
        self.aux: nn.ModuleList | None = None  # DARTS-'s auxiliary path, see add_auxiliary

    def add_auxiliary(self, op: str) -> None:
        """Give every edge DARTS-'s aux module (isdarts.spaces.auxiliary): by `op` on stride-1 edges, a
        FactorizedReduce(C, C) with the cell's BN settings on stride-2 ones; the cell then takes only
        `AuxiliarySkip` weights."""
        c = self.channels
        self.aux = auxiliary_modules(
            op, c, self.strides, lambda: FactorizedReduce(c, c, affine=self.affine, track=self.track)
        )

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        alive: Alive,
        weights: torch.Tensor | None = None,
        probe: OpProbe | None = None,
        cell_index: int = 0,
        skip_drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The concat of the 4 nodes; `probe` sees this cell's ops as cell (kind, cell_index). With `skip_drop`
        (a 0-dim rate) every live stride-1 skip output is dropped out at that rate (P-DARTS)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        stride = 2 if self.reduction else 1
        post = None
        if skip_drop is not None:
            dropped = [e for e, ops in enumerate(alive) if self.strides[e] == 1 and SKIP_OP in ops]
            if dropped:
                post = SkipDropout(SKIP_OP, dropped, states[0][:, :, ::stride, ::stride], skip_drop)

        def empty() -> torch.Tensor:  # no computed op on a node: its output is zeros of the node's shape
            return torch.zeros_like(states[0][:, :, ::stride, ::stride])

        cell = (self.kind, cell_index)
        weights, aux = resolve_auxiliary(weights, self.aux, _aux_reduce_group)
        weights, partial = resolve_partial(weights, self.partial_channels)
        if partial is not None:  # partial channels (isdarts.spaces.partial): its own per-edge loops
            if post is not None:
                raise ValueError("skip dropout is not implemented for partial-channel weights")
            if self.fused:
                sources: list[torch.Tensor] = []  # the ops' inputs: each state's first C/K channels
                mix_cell_partial_fused(
                    self._group_runner(sources), sources, _NODE_INPUTS, states, alive, partial, probe, cell, NONE_OP,
                    self.strides,
                )
            else:
                mix_cell_partial(self.edges, _NODE_INPUTS, states, alive, partial, probe, cell, NONE_OP, self.strides)
        elif self.fused:
            mix_cell_fused(
                self._group_runner(states), _NODE_INPUTS, states, alive, weights, probe, cell, NONE_OP, NUM_OPS, empty,
                aux, post,
            )
        else:
            mix_cell(self.edges, _NODE_INPUTS, states, alive, weights, probe, cell, NONE_OP, empty, aux, post)
        return torch.cat(states[2:], dim=1)

    def _group_runner(self, states: list[torch.Tensor]) -> GroupRunner:
        relu: dict[int, torch.Tensor] = {}  # one ReLU per input state, shared by all its conv ops

        def relu_of(j: int) -> torch.Tensor:
            if j not in relu:
                relu[j] = torch.relu(states[j])
            return relu[j]

        def run_group(j: int, op: int, edges: Sequence[int]) -> torch.Tensor:
            ops = [self.edges[e][op] for e in edges]
            if op in _SEP_OPS:
                first = _separable_units(repeat_blocks(relu_of(j), len(edges)), [unit[0] for unit in ops])
                return split_blocks(_separable_units(torch.relu(first), [unit[1] for unit in ops]), len(edges))
            if op in _DIL_OPS:
                return split_blocks(_separable_units(repeat_blocks(relu_of(j), len(edges)), ops), len(edges))
            if op == SKIP_OP and isinstance(ops[0], FactorizedReduce):
                return _factorized_reduce(relu_of(j), ops)
            # Identity and pools have no weights: one output shared by every edge leaving j.
            if op == AVG_POOL_OP:
                return avg_pool_3x3(states[j], ops[0].stride).unsqueeze(1)
            return ops[0](states[j]).unsqueeze(1)

        return run_group


def _separable_units(x: torch.Tensor, units: Sequence[DilConv]) -> torch.Tensor:
    """k DilConv units after their ReLU, unit i on channel block i of x: depthwise, pointwise, BN as one each."""
    y = conv_stacked(x, [unit[1] for unit in units])
    y = conv_stacked(y, [unit[2] for unit in units])
    return batch_norm_stacked(y, [unit[3] for unit in units])


def _factorized_reduce(relu: torch.Tensor, units: Sequence[FactorizedReduce]) -> torch.Tensor:
    """k FactorizedReduce skips of one (ReLU'd) input: each of the two strided convs once for all k."""
    k = len(units)
    shifted = F.pad(relu, (0, 1, 0, 1))[:, :, 1:, 1:]
    first = split_blocks(conv_shared(relu, [unit.conv_1 for unit in units]), k)
    second = split_blocks(conv_shared(shifted, [unit.conv_2 for unit in units]), k)
    # Per edge its own [conv_1, conv_2] channels, as FactorizedReduce concatenates them, then one BN; kept in
    # the input's memory format, so that a channels-last network stays channels-last.
    fmt = torch.channels_last if relu.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    y = torch.cat([first, second], dim=2).flatten(1, 2).contiguous(memory_format=fmt)
    return split_blocks(batch_norm_stacked(y, [unit.bn for unit in units]), k)


def _aux_reduce_group(x: torch.Tensor, units: Sequence[nn.Module]) -> torch.Tensor:
    """The fused run of DARTS-'s stride-2 aux modules (FactorizedReduce) of the edges leaving one state."""
    return _factorized_reduce(torch.relu(x), units)


class DartsSupernet(nn.Module):
    """DARTS-space search network with `normal_mask` and `reduce_mask` buffers, (14, 8) float 0/1 each.

    The supernet interface of isdarts.spaces.space: forward(x, weights, probe) returns (pooled features,
    logits). `fused` picks the fused cells (see above). `partial_channels` K > 1 builds the cells' ops at 1/K
    of each stage's channels, for `PartialChannels` weights of that K (isdarts.spaces.partial); K=1 is the
    full network. `auxiliary` ("skip" or "conv1") gives every cell edge DARTS-'s aux module, for `AuxiliarySkip`
    weights (isdarts.spaces.auxiliary); None (the default) builds none. `set_skip_dropout` adds P-DARTS's
    dropout on the stride-1 skip outputs (none unless asked).
    """

    KINDS = CELL_KINDS

    def __init__(
        self,
        channels: int = 16,
        cells_per_stage: int = 2,
        num_classes: int = 10,
        stem_multiplier: int = 3,
        *,
        affine: bool = False,
        track: bool = False,
        fused: bool = True,
        partial_channels: int = 1,
        auxiliary: str | None = None,
    ) -> None:
        super().__init__()
        self.channels, self.cells_per_stage, self.num_classes = channels, cells_per_stage, num_classes
        self.partial_channels = partial_channels
        stages = [channels, 2 * channels, 4 * channels]
        check_partial_channels(stages, partial_channels)
        check_auxiliary(auxiliary)
        if auxiliary is not None and partial_channels > 1:
            raise ValueError(f"the auxiliary path and partial channels (K={partial_channels}) do not combine; "
                             "build with partial_channels=1 or auxiliary=None")
        self.auxiliary = auxiliary
        if partial_channels > 1 and any(c // partial_channels % 2 for c in stages):
            raise ValueError(
                f"partial channels K={partial_channels}: the stride-2 skip (FactorizedReduce) needs an even C/K at "
                f"every stage, got {[c // partial_channels for c in stages]} of the stage channels {stages}"
            )
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        n = cells_per_stage
        layout = [False] * n + [True] + [False] * n + [True] + [False] * n
        c_prev_prev, c_prev, c, reduction_prev = c_stem, c_stem, channels, False
        self.cells = nn.ModuleList()
        for reduction in layout:
            if reduction:
                c *= 2
            self.cells.append(
                DartsSearchCell(
                    c_prev_prev,
                    c_prev,
                    c,
                    reduction=reduction,
                    reduction_prev=reduction_prev,
                    affine=affine,
                    track=track,
                    fused=fused,
                    partial_channels=partial_channels,
                )
            )
            c_prev_prev, c_prev, reduction_prev = c_prev, DARTS_NUM_NODES * c, reduction
        self.head = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        self.register_buffer("normal_mask", torch.ones(NUM_EDGES, NUM_OPS))
        self.register_buffer("reduce_mask", torch.ones(NUM_EDGES, NUM_OPS))
        # Every op starts alive; set without reading the buffers, so a meta-device build works too.
        everything = tuple(tuple(range(NUM_OPS)) for _ in range(NUM_EDGES))
        self._alive: dict[str, Alive] = {kind: everything for kind in CELL_KINDS}
        self._skip_drop_on = False  # see set_skip_dropout
        # A checkpoint load replaces the mask buffers; keep the host-side alive lists in step with them.
        self.register_load_state_dict_post_hook(lambda module, _incompatible: module._refresh_alive())
        if auxiliary is not None:
            # Built last, so every other module is initialised as in a supernet without the aux path.
            for cell in self.cells:
                cell.add_auxiliary(auxiliary)

    # ----------------------------------------------------------------- masks
    def num_cells(self, kind: str) -> int:
        """How many cells of `kind` ("normal" or "reduce") share that kind's mask."""
        return sum(cell.kind == _check_kind(kind) for cell in self.cells)

    def get_mask(self, kind: str) -> torch.Tensor:
        """The (14, 8) mask buffer of `kind` (the live buffer: use set_mask to change it)."""
        return self.normal_mask if _check_kind(kind) == "normal" else self.reduce_mask

    @property
    def alive(self) -> dict[str, Alive]:
        """Per kind, per edge, the op indices the mask keeps (host-side: no device sync per step)."""
        return self._alive

    def set_mask(self, kind: str, mask: torch.Tensor) -> None:
        """Replace the mask of `kind`; every node must keep at least one (edge, op) candidate."""
        buf = self.get_mask(kind)
        mask = mask.to(buf.device, buf.dtype)
        if mask.shape != buf.shape or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{kind} mask must be a {tuple(buf.shape)} tensor of 0/1, got {mask}")
        rows = mask.detach().cpu().tolist()
        for node, subset in enumerate(darts_node_subsets()):
            if not any(rows[e][o] > 0.5 for e, o in subset):
                raise ValueError(f"{kind} mask would leave node {node} with no candidate op")
        buf.copy_(mask)
        self._refresh_alive()

    def _refresh_alive(self) -> None:
        for kind in CELL_KINDS:
            self._alive[kind] = alive_ops(self.get_mask(kind))

    # ----------------------------------------------------------------- skip dropout
    def set_skip_dropout(self, rate: float) -> None:
        """Drop out every live stride-1 skip output of the search cells at `rate` in [0, 1), in training mode
        only (P-DARTS); rate 0 turns it off. A supernet never asked has none: the first call adds the rate as
        a non-persistent 0-dim buffer (state dicts keep their keys), later calls refill it."""
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"skip dropout rate must be in [0, 1), got {rate}")
        if "skip_drop_rate" not in self._buffers:
            self.register_buffer(
                "skip_drop_rate", torch.zeros((), device=self.classifier.weight.device), persistent=False
            )
        self.skip_drop_rate.fill_(rate)
        self._skip_drop_on = rate > 0.0

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        x: torch.Tensor,
        weights: Mapping[str, KindWeights] | None = None,
        probe: OpProbe | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`weights` = {"normal": ..., "reduce": ...} DARTS-style op weights, each one (14, 8) table shared by
        the kind's cells or one per cell; None mixes by the masks with 1/|O|."""
        if weights is not None:
            for kind in CELL_KINDS:
                w = weights[kind]
                if isinstance(w, (list, tuple)) and len(w) != self.num_cells(kind):
                    raise ValueError(f"expected {self.num_cells(kind)} per-cell {kind} weight tensors, got {len(w)}")
        s0 = s1 = self.stem(x)
        skip_drop = self.skip_drop_rate if self._skip_drop_on and self.training else None
        index = {kind: 0 for kind in CELL_KINDS}
        for cell in self.cells:
            kind = cell.kind
            w = None if weights is None else _cell_weights(weights[kind], index[kind])
            s0, s1 = s1, cell(s0, s1, self._alive[kind], w, probe, index[kind], skip_drop=skip_drop)
            index[kind] += 1
        features = self.pool(self.head(s1)).flatten(1)
        return features, self.classifier(features)


def _check_kind(kind: str) -> str:
    if kind not in CELL_KINDS:
        raise ValueError(f"cell kind must be 'normal' or 'reduce', got {kind!r}")
    return kind


def _cell_weights(w: KindWeights, index: int) -> Any:
    return w[index] if isinstance(w, (list, tuple)) else w
