"""What both search spaces share: the ReLU-Conv-BN and zero ops, the op probe, and the loops that mix a
cell's live ops.

Both supernets compute a cell through `mix_cell` (every op its own call: the reference) or
`mix_cell_fused` (the ops of one kind on all edges that leave a state as one call, see spaces/fused.py),
so how live ops are run is decided once for NB201 and the DARTS space alike. Partial channels (PC-DARTS,
isdarts.spaces.partial) have their own pair, `mix_cell_partial` and `mix_cell_partial_fused`, which add each
edge's ops into the edge's own sum before its bypass and shuffle. DARTS-'s auxiliary path
(isdarts.spaces.auxiliary) is an `aux` argument of the first pair: each edge's β·aux_e(x) after its ops.
Their `post` argument sees each computed op output before it is weighted (P-DARTS's `SkipDropout`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Protocol

import torch
from torch import nn

from isdarts.spaces.auxiliary import AuxiliaryTerms
from isdarts.spaces.mixing import SampledPath, node_scalars
from isdarts.spaces.partial import PartialChannels

# (input state j, edge index) per input of one node, in the order the node sums them.
NodeInputs = tuple[tuple[int, int], ...]
Alive = tuple[tuple[int, ...], ...]
Candidate = tuple[int, int]  # (edge index, op index)
OpTypes = Sequence[Sequence[str]]  # per edge, the name of each of its ops (columns)
# Runs one op kind on the edges that leave one state: (state j, op, edges) -> (B, len(edges), C, H, W), or
# (B, 1, C, H, W) when all those edges share one output (skip, pools: they have no weights).
GroupRunner = Callable[[int, int, Sequence[int]], torch.Tensor]


class OpProbe(Protocol):
    """Sees every candidate-op output a cell computes (the IIM measures them); `cell` names the cell."""

    def outputs(self, cell: Hashable, candidates: Sequence[Candidate], stacked: torch.Tensor) -> None:
        """`stacked` is (B, k, C, H, W) for the k candidates, or (B, 1, C, H, W) when they share one output."""

    def zeros(self, cell: Hashable, candidates: Sequence[Candidate], batch: int) -> None:
        """The candidates are `none` ops: exact zeros, never computed."""


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv -> BN. The conv carries a bias exactly when BN is not affine (an AutoDL quirk we keep)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, *, affine: bool, track: bool
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=not affine),
            nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track),
        )


class Zero(nn.Module):
    """The `none` op: zeros with the (strided) output shape; it never needs computing, see `mix_cell`."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def alive_ops(mask: torch.Tensor) -> Alive:
    """Per edge (mask row), the op indices the 0/1 mask keeps, as a host-side copy."""
    rows = mask.detach().cpu().tolist()
    return tuple(tuple(o for o, keep in enumerate(row) if keep > 0.5) for row in rows)


def alive_per_node(mask: torch.Tensor, subsets: Sequence[Sequence[Candidate]]) -> list[int]:
    """How many (edge, op) candidates of each comparison subset the mask keeps."""
    rows = mask.detach().cpu().tolist()
    return [sum(rows[e][o] > 0.5 for e, o in subset) for subset in subsets]


# (edge, op, output) -> output: applied to every computed op output before it is weighted (`SkipDropout`).
OutputHook = Callable[[int, int, torch.Tensor], torch.Tensor]


class SkipDropout:
    """Inverted dropout on the outputs of the (edge, op) `candidates` (P-DARTS: the stride-1 skips), as an
    `OutputHook`.

    An output is zeroed with probability `rate` (a 0-dim tensor: a new rate each epoch recompiles nothing) and
    kept times 1/(1 - rate). The keep masks of one forward are drawn up front, one block in the given (edge)
    order, so the fused and the unfused loops drop the same entries. Build one only for non-empty `candidates`,
    so a cell with no live skip draws no random numbers.
    """

    def __init__(self, candidates: Sequence[Candidate], like: torch.Tensor, rate: torch.Tensor) -> None:
        noise = torch.rand((len(candidates), *like.shape), device=like.device)
        self.keep = dict(zip(candidates, (noise >= rate).unbind(0), strict=True))
        self.scale = 1.0 / (1.0 - rate)

    def __call__(self, edge: int, op: int, out: torch.Tensor) -> torch.Tensor:
        keep = self.keep.get((edge, op))
        return out if keep is None else out * keep * self.scale


def mix_cell(
    edges: nn.ModuleList,
    node_inputs: Sequence[tuple[int, NodeInputs]],
    states: list[torch.Tensor],
    alive: Alive,
    weights: torch.Tensor | SampledPath | None,
    probe: OpProbe | None,
    cell: Hashable,
    none_op: int,
    empty: Callable[[], torch.Tensor],
    aux: AuxiliaryTerms | None = None,
    post: OutputHook | None = None,
) -> list[torch.Tensor]:
    """Append each node's mix of its live ops to `states` (the cell inputs) and return the list.

    `edges[e][o]` is op o of edge e, each run as its own call: the reference the fused path is tested
    against. With `weights` (edges, ops) each op output is scaled by its weight; without, the node is the
    plain sum times 1/|O| of all ops, not of the survivors (IS-DARTS, spec §3.1); a `SampledPath` runs
    its one op per edge (isdarts.spaces.mixing). Masked ops and `none` (exact zeros) are never run. A node
    with no computed op takes `empty()`. With `aux` each edge adds its aux term after its ops. `post` sees
    each computed op output (after the probe, before weighting) and may replace it (P-DARTS's skip dropout).
    """
    path = weights if isinstance(weights, SampledPath) else None
    if path is not None:
        alive, weights = path.alive(alive), path.hard
    scale = 1.0 / len(edges[0])
    for _, inputs in node_inputs:
        total: torch.Tensor | None = None
        for j, edge in inputs:
            for op in alive[edge]:
                if op == none_op:
                    if probe is not None:
                        probe.zeros(cell, [(edge, op)], states[j].shape[0])
                    continue
                out = edges[edge][op](states[j])
                if probe is not None:
                    probe.outputs(cell, [(edge, op)], out.unsqueeze(1))
                if post is not None:
                    out = post(edge, op, out)
                out = out * weights[edge, op] if weights is not None else out
                total = out if total is None else total + out
            if aux is not None:
                out = aux.edge(edge, states[j])
                total = out if total is None else total + out
        states.append(_finish_node(total, weights, scale, empty, node_scalars(path, [e for _, e in inputs])))
    return states


def mix_cell_fused(
    run_group: GroupRunner,
    node_inputs: Sequence[tuple[int, NodeInputs]],
    states: list[torch.Tensor],
    alive: Alive,
    weights: torch.Tensor | SampledPath | None,
    probe: OpProbe | None,
    cell: Hashable,
    none_op: int,
    num_ops: int,
    empty: Callable[[], torch.Tensor],
    aux: AuxiliaryTerms | None = None,
    post: OutputHook | None = None,
    op_types: OpTypes | None = None,
) -> list[torch.Tensor]:
    """`mix_cell` with each op kind run once per input state for all the edges that leave it.

    States are visited in order; when state j is reached every node before it is complete, so its
    outgoing ops can run. Where edges differ in their ops, `op_types[e][o]` names op o of edge e, and one
    call runs the edges whose column o holds the same op. Each node still adds its terms in the reference
    order (input j, then op), and weighting happens after the split, so values and gradients are those of the
    unfused cell.
    """
    path = weights if isinstance(weights, SampledPath) else None
    if path is not None:
        alive, weights = path.alive(alive), path.hard

    def scalars(node: int) -> torch.Tensor | None:
        return node_scalars(path, [e for _, e in node_inputs[node][1]])

    num_inputs = len(states)
    totals: list[torch.Tensor | None] = [None] * len(node_inputs)
    scale = 1.0 / num_ops
    for j in range(num_inputs + len(node_inputs) - 1):
        if j >= num_inputs:
            states.append(_finish_node(totals[j - num_inputs], weights, scale, empty, scalars(j - num_inputs)))
        leaving = _leaving(node_inputs, j)
        outputs = _group_outputs(run_group, j, leaving, alive, probe, cell, none_op, states[j].shape[0], op_types)
        aux_terms = aux.group(states[j], [e for _, e in leaving]) if aux is not None else {}
        for node, edge in leaving:
            for op in alive[edge]:
                if op == none_op:
                    continue
                term = outputs[edge, op] if post is None else post(edge, op, outputs[edge, op])
                term = term * weights[edge, op] if weights is not None else term
                totals[node] = term if totals[node] is None else totals[node] + term
            if aux is not None:
                term = aux_terms[edge]
                totals[node] = term if totals[node] is None else totals[node] + term
    states.append(_finish_node(totals[-1], weights, scale, empty, scalars(len(node_inputs) - 1)))
    return states


def _finish_node(
    total: torch.Tensor | None, weights: torch.Tensor | None, scale: float, empty: Callable[[], torch.Tensor],
    scalars: torch.Tensor | None = None,
) -> torch.Tensor:
    if total is None:
        node = empty()
    else:
        node = total * scale if weights is None else total
    # A sampled path's zero-valued scalars, which carry the gradient of its unselected entries.
    return node if scalars is None else node + scalars


def _leaving(node_inputs: Sequence[tuple[int, NodeInputs]], j: int) -> list[tuple[int, int]]:
    """(node, edge) of every edge that reads state j, in node order."""
    return [(node, edge) for node, (_, inputs) in enumerate(node_inputs) for jj, edge in inputs if jj == j]


def _group_outputs(
    run_group: GroupRunner, j: int, leaving: Sequence[tuple[int, int]], alive: Alive, probe: OpProbe | None,
    cell: Hashable, none_op: int, batch: int, op_types: OpTypes | None = None,
) -> dict[tuple[int, int], torch.Tensor]:
    """Run each live op kind once for all the `leaving` edges of state j; {(edge, op): its output}."""
    by_op: dict[tuple[int, str], list[int]] = {}
    for _, edge in leaving:
        for op in alive[edge]:
            by_op.setdefault((op, "" if op_types is None else op_types[edge][op]), []).append(edge)
    outputs: dict[tuple[int, int], torch.Tensor] = {}  # (edge, op) -> its output
    for (op, _), op_edges in sorted(by_op.items()):
        if op == none_op:
            if probe is not None:
                probe.zeros(cell, [(e, op) for e in op_edges], batch)
            continue
        stacked = run_group(j, op, op_edges)
        if probe is not None:
            probe.outputs(cell, [(e, op) for e in op_edges], stacked)
        # One unbind, not k slices: its backward stacks the k gradients in one allocation.
        pieces = stacked.unbind(1)
        outputs.update(((e, op), pieces[0 if len(pieces) == 1 else i]) for i, e in enumerate(op_edges))
    return outputs


# ---------------------------------------------------------------- partial channels (isdarts.spaces.partial)
def resolve_partial(weights: object, built_k: int) -> tuple[object, PartialChannels | None]:
    """(weights for `mix_cell`/`mix_cell_fused`, None) or (None, the strategy for the partial loops).

    A `PartialChannels` that is plain DARTS mixing (K=1, no edge weights) runs as its (edges, ops) table, so
    it is DARTS's mixed op bit for bit. A supernet built with its ops at C/K channels takes nothing but
    `PartialChannels` of that K.
    """
    k = weights.k if isinstance(weights, PartialChannels) else 1
    if k != built_k:
        raise ValueError(
            f"this supernet's ops are built for partial channels K={built_k}; its weights must be PartialChannels "
            f"with k={built_k}, got {type(weights).__name__}" + (f" with k={k}" if k != 1 else "")
        )
    if not isinstance(weights, PartialChannels):
        return weights, None
    return (weights.weights, None) if weights.plain else (None, weights)


def check_partial_channels(stage_channels: Sequence[int], k: int) -> None:
    """Refuse a K < 1 or one that does not divide the channels of every stage."""
    if k < 1 or any(c % k for c in stage_channels):
        raise ValueError(
            f"partial channels K={k} must be a positive divisor of every stage's channels {list(stage_channels)}"
        )


def mix_cell_partial(
    edges: nn.ModuleList,
    node_inputs: Sequence[tuple[int, NodeInputs]],
    states: list[torch.Tensor],
    alive: Alive,
    pc: PartialChannels,
    probe: OpProbe | None,
    cell: Hashable,
    none_op: int,
    strides: Sequence[int],
) -> list[torch.Tensor]:
    """`mix_cell` for partial channels: per edge, its live ops (built at C/K) on the first C/K channels of
    the input, weighted and summed in op order; then `pc.combine` (bypass, shuffle) and `pc.edge_term`
    (edge normalisation); the node sums its edges in input order. An edge with no computed op has a zero
    op part. `strides[e]` is edge e's stride (its bypass is max-pooled when 2)."""
    for _, inputs in node_inputs:
        terms = []
        for j, edge in inputs:
            h = states[j]
            h_ops = pc.op_part(h)
            mixed: torch.Tensor | None = None
            for op in alive[edge]:
                if op == none_op:
                    if probe is not None:
                        probe.zeros(cell, [(edge, op)], h.shape[0])
                    continue
                out = edges[edge][op](h_ops)
                if probe is not None:
                    probe.outputs(cell, [(edge, op)], out.unsqueeze(1))
                out = out * pc.weights[edge, op]
                mixed = out if mixed is None else mixed + out
            terms.append(pc.edge_term(pc.combine(mixed, h, strides[edge]), edge))
        states.append(_sum_in_order(terms))
    return states


def mix_cell_partial_fused(
    run_group: GroupRunner,
    sources: list[torch.Tensor],
    node_inputs: Sequence[tuple[int, NodeInputs]],
    states: list[torch.Tensor],
    alive: Alive,
    pc: PartialChannels,
    probe: OpProbe | None,
    cell: Hashable,
    none_op: int,
    strides: Sequence[int],
    op_types: OpTypes | None = None,
) -> list[torch.Tensor]:
    """`mix_cell_partial` with the ops fused as in `mix_cell_fused` (`op_types` as there). `run_group` reads its
    inputs from `sources` (empty on entry), which this fills with each complete state's first C/K channels; the
    terms are added in `mix_cell_partial`'s order."""
    num_inputs = len(states)
    terms: list[list[torch.Tensor]] = [[] for _ in node_inputs]  # per node, its edges' terms in input order
    for j in range(num_inputs + len(node_inputs) - 1):
        if j >= num_inputs:
            states.append(_sum_in_order(terms[j - num_inputs]))
        sources.append(pc.op_part(states[j]))
        leaving = _leaving(node_inputs, j)
        outputs = _group_outputs(run_group, j, leaving, alive, probe, cell, none_op, states[j].shape[0], op_types)
        for node, edge in leaving:
            mixed: torch.Tensor | None = None
            for op in alive[edge]:
                if op == none_op:
                    continue
                out = outputs[edge, op] * pc.weights[edge, op]
                mixed = out if mixed is None else mixed + out
            terms[node].append(pc.edge_term(pc.combine(mixed, states[j], strides[edge]), edge))
    states.append(_sum_in_order(terms[-1]))
    return states


def _sum_in_order(terms: Sequence[torch.Tensor]) -> torch.Tensor:
    """((t0 + t1) + t2) + ...: a node's edge terms, added as the loops add them."""
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
