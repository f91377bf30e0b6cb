"""The IS-DARTS search supernet of the DARTS space (spec §2, AutoDL "nasnet-super") and of its variants.

8 cells [N, N, R, N, N, R, N, N] at C=16; every cell holds all 8 ops on each of its 14 edges. Normal and
reduction cells each share one (14, 8) binary mask, kept as buffers so checkpoints carry them. Ops the
mask removes are never computed, and `none` (exact zeros) never: a probe (the IIM) is told it is zeros.

`edge_ops` gives each cell kind its own candidate ops per edge (RobustDARTS's S1-S5: column c of edge e is
op `edge_ops[kind][e][c]`, every edge with the same number of columns, so α and the masks stay (14, k)
tables); the default is the DARTS space's 8 ops on every edge. `none`, where a table has it, sits in one
column on every edge. Live `noise` ops are drawn in edge order before a cell mixes, so both loops below
use the same noise.

With `fused=True` (the default) a cell runs, per input state, each op kind once for all the edges that
leave it: one ReLU, one depthwise and one grouped pointwise conv (and one BN) per separable unit kind, one
FactorizedReduce conv pair, one shared pool and skip; `fused=False` runs every op as its own module, the
reference the fused path is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
from isdarts.spaces.darts.ops import (
    DARTS_SEARCH_OPS,
    KNOWN_SEARCH_OPS,
    SEARCH_TO_EVAL,
    DilConv,
    FactorizedReduce,
    NoiseOp,
    make_search_op,
    search_name,
)
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
    "DARTS_EDGE_OPS",
    "EdgeOps",
    "NONE_OP",
    "NUM_EDGES",
    "NUM_OPS",
    "DartsSearchCell",
    "DartsSupernet",
    "OpProbe",
    "check_edge_ops",
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
_SEP_OPS = frozenset({"dua_sepc_3x3", "dua_sepc_5x5"})
_DIL_OPS = frozenset({"dil_sepc_3x3", "dil_sepc_5x5"})
_EDGE_INPUT: tuple[int, ...] = tuple(int(key.split("<-")[1]) for key in DARTS_EDGES)
# (node i, [(input state j, edge index)]) in the order the cell computes them.
_NODE_INPUTS: tuple[tuple[int, NodeInputs], ...] = tuple(
    (i, tuple((j, DARTS_EDGES.index(f"{i}<-{j}")) for j in range(2 + i))) for i in range(DARTS_NUM_NODES)
)

# DARTS-style op weights per cell kind: one (14, 8) tensor shared by the kind's cells, or one per cell.
KindWeights = torch.Tensor | Sequence[torch.Tensor]
# Per edge, its candidate ops (search names) in column order.
EdgeOps = tuple[tuple[str, ...], ...]
DARTS_EDGE_OPS: EdgeOps = (DARTS_SEARCH_OPS,) * NUM_EDGES


def check_edge_ops(kind: str, table: Sequence[Sequence[str]]) -> EdgeOps:
    """Validate one cell kind's per-edge op table (search or evaluation names) and return it as tuples of search
    names: 14 edges, each with the same number (>= 2) of distinct known ops, and `none` in one column on every
    edge or on none."""
    rows = tuple(tuple(search_name(op) for op in row) for row in table)
    if len(rows) != NUM_EDGES:
        raise ValueError(f"{kind} cells: expected candidate ops for {NUM_EDGES} edges, got {len(rows)}")
    widths = {len(row) for row in rows}
    if len(widths) != 1 or min(widths) < 2:
        raise ValueError(f"{kind} cells: every edge needs the same number (>= 2) of candidate ops, got "
                         f"{sorted(widths)}")
    for e, row in enumerate(rows):
        unknown = [op for op in row if op not in KNOWN_SEARCH_OPS]
        if unknown or len(set(row)) != len(row):
            raise ValueError(f"{kind} edge {DARTS_EDGES[e]}: ops {list(row)} must be distinct and among "
                             f"{', '.join(KNOWN_SEARCH_OPS)}")
    if len({row.index("none") if "none" in row else -1 for row in rows}) != 1:
        raise ValueError(f"{kind} cells: `none` must sit in the same column on every edge, or on no edge")
    return rows


def none_column(table: EdgeOps) -> int:
    """The column of `none` in a checked table (-1: the table has none)."""
    return table[0].index("none") if "none" in table[0] else -1


def darts_node_subsets(num_ops: int = NUM_OPS) -> list[list[Candidate]]:
    """IS-DARTS comparison subsets: all (edge, op) entering node i, inputs ascending then ops (16/24/32/40 with
    8 ops per edge)."""
    return [[(edge, o) for _, edge in inputs for o in range(num_ops)] for _, inputs in _NODE_INPUTS]


def derive_darts_cell(weights: torch.Tensor, ops: EdgeOps = DARTS_EDGE_OPS) -> Cell:
    """The standard DARTS derivation of one cell from its (14, k) op weights, in evaluation op names.

    Per node: rank its input edges by their largest non-`none` weight (stable, so ties go to the lower
    input j), keep the top 2, and on each the non-`none` op with the largest weight (ties: lower column).
    The pairs are listed strongest edge first, as DARTS does. `none` is never picked. `ops[e][c]` names
    column c of edge e.
    """
    rows = weights.detach().cpu().double().tolist()
    nodes = []
    for _, inputs in _NODE_INPUTS:
        best = {edge: max((o for o, name in enumerate(ops[edge]) if name != "none"), key=lambda o, e=edge: rows[e][o])
                for _, edge in inputs}
        ranked = sorted(inputs, key=lambda je: -rows[je[1]][best[je[1]]])
        nodes.append(tuple((SEARCH_TO_EVAL[ops[edge][best[edge]]], j) for j, edge in ranked[:INPUTS_PER_NODE]))
    return tuple(nodes)


def derive_darts_genotype(
    normal: torch.Tensor, reduce: torch.Tensor, edge_ops: Mapping[str, EdgeOps] | None = None
) -> DartsGenotype:
    """Both cells by `derive_darts_cell`, concatenating all four nodes."""
    concat = DARTS_DEFAULT_CONCAT
    tables = edge_ops or {kind: DARTS_EDGE_OPS for kind in CELL_KINDS}
    return DartsGenotype(derive_darts_cell(normal, tables["normal"]), concat,
                         derive_darts_cell(reduce, tables["reduce"]), concat)


def darts_genotype_from_masks(
    masks: Mapping[str, torch.Tensor], edge_ops: Mapping[str, EdgeOps] | None = None
) -> DartsGenotype:
    """The final genotype (spec §3.4) of {kind: (14, k) 0/1 mask}: per node, the two surviving (op, input),
    in evaluation names; a GenotypeError unless exactly two survive in every node."""
    cells = {}
    for kind in CELL_KINDS:
        rows = masks[kind].detach().cpu().tolist()
        ops = DARTS_EDGE_OPS if edge_ops is None else edge_ops[kind]
        nodes = []
        for node, subset in enumerate(darts_node_subsets(len(ops[0]))):
            cands = [(ops[e][o], _EDGE_INPUT[e], rows[e][o]) for e, o in subset]
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
        ops: EdgeOps = DARTS_EDGE_OPS,
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
        self.op_names = ops
        # (edge, column) of each `noise` op (space S4 only), so other spaces skip the per-forward scan.
        self.noise_slots = tuple(
            (e, o) for e, names in enumerate(ops) for o, name in enumerate(names) if name == "noise"
        )
        self.none_op = none_column(ops)
        self.num_ops = len(ops[0])
        self.edges = nn.ModuleList(
            nn.ModuleList(
                make_search_op(op, op_channels, stride, affine=affine, track=track) for op in names
            )
            for names, stride in zip(ops, self.strides, strict=True)
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
            dropped = [(e, o) for e, ops in enumerate(alive) for o in ops
                       if self.strides[e] == 1 and self.op_names[e][o] == "skip_connect"]
            if dropped:
                post = SkipDropout(dropped, states[0][:, :, ::stride, ::stride], skip_drop)
        # Every op output has a node's shape (at C/K channels with partial channels).
        noise = self._draw_noise(alive, states[0][:, : self.channels // self.partial_channels, ::stride, ::stride])

        def empty() -> torch.Tensor:  # no computed op on a node: its output is zeros of the node's shape
            return torch.zeros_like(states[0][:, :, ::stride, ::stride])

        cell = (self.kind, cell_index)
        try:
            self._mix(states, alive, weights, probe, cell, post, empty)
        finally:
            for op in noise:  # a sampled path may have left some unused
                op.pending = None
        return torch.cat(states[2:], dim=1)

    def _draw_noise(self, alive: Alive, like: torch.Tensor) -> list[NoiseOp]:
        """Hand every live `noise` op its output for this forward, drawn in edge order (every cell output has
        `like`'s shape), so the fused and the per-op loops consume the same random numbers."""
        drawn = []
        for e, o in self.noise_slots:  # edge order
            if o in alive[e]:
                op = self.edges[e][o]
                op.pending = torch.randn(like.shape, dtype=like.dtype, device=like.device)
                drawn.append(op)
        return drawn

    def _mix(
        self, states: list[torch.Tensor], alive: Alive, weights: Any, probe: OpProbe | None, cell: tuple[str, int],
        post: SkipDropout | None, empty: Callable[[], torch.Tensor],
    ) -> None:
        none_op, types = self.none_op, self.op_names
        weights, aux = resolve_auxiliary(weights, self.aux, _aux_reduce_group)
        weights, partial = resolve_partial(weights, self.partial_channels)
        if partial is not None:  # partial channels (isdarts.spaces.partial): its own per-edge loops
            if post is not None:
                raise ValueError("skip dropout is not implemented for partial-channel weights")
            if self.fused:
                sources: list[torch.Tensor] = []  # the ops' inputs: each state's first C/K channels
                mix_cell_partial_fused(
                    self._group_runner(sources), sources, _NODE_INPUTS, states, alive, partial, probe, cell, none_op,
                    self.strides, types,
                )
            else:
                mix_cell_partial(self.edges, _NODE_INPUTS, states, alive, partial, probe, cell, none_op, self.strides)
        elif self.fused:
            mix_cell_fused(
                self._group_runner(states), _NODE_INPUTS, states, alive, weights, probe, cell, none_op, self.num_ops,
                empty, aux, post, types,
            )
        else:
            mix_cell(self.edges, _NODE_INPUTS, states, alive, weights, probe, cell, none_op, empty, aux, post)

    def _group_runner(self, states: list[torch.Tensor]) -> GroupRunner:
        relu: dict[int, torch.Tensor] = {}  # one ReLU per input state, shared by all its conv ops

        def relu_of(j: int) -> torch.Tensor:
            if j not in relu:
                relu[j] = torch.relu(states[j])
            return relu[j]

        def run_group(j: int, op: int, edges: Sequence[int]) -> torch.Tensor:
            # The loops group edges by column and op name, so every edge here runs the same kind of op.
            ops = [self.edges[e][op] for e in edges]
            name = self.op_names[edges[0]][op]
            if name in _SEP_OPS:
                first = _separable_units(repeat_blocks(relu_of(j), len(edges)), [unit[0] for unit in ops])
                return split_blocks(_separable_units(torch.relu(first), [unit[1] for unit in ops]), len(edges))
            if name in _DIL_OPS:
                return split_blocks(_separable_units(repeat_blocks(relu_of(j), len(edges)), ops), len(edges))
            if name == "skip_connect" and isinstance(ops[0], FactorizedReduce):
                return _factorized_reduce(relu_of(j), ops)
            if name == "noise":  # drawn ahead, one per edge (see _draw_noise)
                return torch.stack([op_(states[j]) for op_ in ops], dim=1)
            # Identity and pools have no weights: one output shared by every edge leaving j.
            if name == "avg_pool_3x3":
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
    full network. `edge_ops` ({kind: per-edge op table}, see above) replaces the 8 DARTS ops on every edge.
    `auxiliary` ("skip" or "conv1") gives every cell edge DARTS-'s aux module, for `AuxiliarySkip`
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
        edge_ops: Mapping[str, Sequence[Sequence[str]]] | None = None,
    ) -> None:
        super().__init__()
        self.channels, self.cells_per_stage, self.num_classes = channels, cells_per_stage, num_classes
        self.edge_ops: dict[str, EdgeOps] = {
            kind: DARTS_EDGE_OPS if edge_ops is None else check_edge_ops(kind, edge_ops[kind]) for kind in CELL_KINDS
        }
        num_ops = {len(table[0]) for table in self.edge_ops.values()}
        if len(num_ops) != 1:
            raise ValueError(f"normal and reduction cells need the same number of ops per edge, got {sorted(num_ops)}")
        self.num_ops = num_ops.pop()
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
                    ops=self.edge_ops["reduce" if reduction else "normal"],
                )
            )
            c_prev_prev, c_prev, reduction_prev = c_prev, DARTS_NUM_NODES * c, reduction
        self.head = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        self.register_buffer("normal_mask", torch.ones(NUM_EDGES, self.num_ops))
        self.register_buffer("reduce_mask", torch.ones(NUM_EDGES, self.num_ops))
        # Every op starts alive; set without reading the buffers, so a meta-device build works too.
        everything = tuple(tuple(range(self.num_ops)) for _ in range(NUM_EDGES))
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
        """The (14, k) mask buffer of `kind` (the live buffer: use set_mask to change it)."""
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
        for node, subset in enumerate(darts_node_subsets(self.num_ops)):
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
