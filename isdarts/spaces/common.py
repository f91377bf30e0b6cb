"""What both search spaces share: the ReLU-Conv-BN and zero ops, the op probe, and the loops that mix a
cell's live ops.

Both supernets compute a cell through `mix_cell` (every op its own call: the reference) or
`mix_cell_fused` (the ops of one kind on all edges that leave a state as one call, see spaces/fused.py),
so how live ops are run is decided once for NB201 and the DARTS space alike.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Protocol

import torch
from torch import nn

from isdarts.spaces.mixing import SampledPath, node_scalars

# (input state j, edge index) per input of one node, in the order the node sums them.
NodeInputs = tuple[tuple[int, int], ...]
Alive = tuple[tuple[int, ...], ...]
Candidate = tuple[int, int]  # (edge index, op index)
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
) -> list[torch.Tensor]:
    """Append each node's mix of its live ops to `states` (the cell inputs) and return the list.

    `edges[e][o]` is op o of edge e, each run as its own call: the reference the fused path is tested
    against. With `weights` (edges, ops) each op output is scaled by its weight; without, the node is the
    plain sum times 1/|O| of all ops, not of the survivors (IS-DARTS, spec §3.1); a `SampledPath` runs
    its one op per edge (isdarts.spaces.mixing). Masked ops and `none` (exact zeros) are never run. A node
    with no computed op takes `empty()`.
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
                out = out * weights[edge, op] if weights is not None else out
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
) -> list[torch.Tensor]:
    """`mix_cell` with each op kind run once per input state for all the edges that leave it.

    States are visited in order; when state j is reached every node before it is complete, so its
    outgoing ops can run. Each node still adds its terms in the reference order (input j, then op), and
    weighting happens after the split, so values and gradients are those of the unfused cell.
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
        leaving = [(node, edge) for node, (_, inputs) in enumerate(node_inputs) for jj, edge in inputs if jj == j]
        by_op: dict[int, list[int]] = {}
        for _, edge in leaving:
            for op in alive[edge]:
                by_op.setdefault(op, []).append(edge)
        outputs: dict[tuple[int, int], torch.Tensor] = {}  # (edge, op) -> its output
        for op, op_edges in sorted(by_op.items()):
            if op == none_op:
                if probe is not None:
                    probe.zeros(cell, [(e, op) for e in op_edges], states[j].shape[0])
                continue
            stacked = run_group(j, op, op_edges)
            if probe is not None:
                probe.outputs(cell, [(e, op) for e in op_edges], stacked)
            # One unbind, not k slices: its backward stacks the k gradients in one allocation.
            pieces = stacked.unbind(1)
            outputs.update(((e, op), pieces[0 if len(pieces) == 1 else i]) for i, e in enumerate(op_edges))
        for node, edge in leaving:
            for op in alive[edge]:
                if op == none_op:
                    continue
                term = outputs[edge, op]
                term = term * weights[edge, op] if weights is not None else term
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
