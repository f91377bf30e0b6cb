"""What both search spaces share: the ReLU-Conv-BN and zero ops, and the one loop that mixes a cell's live ops.

Both supernets compute a cell node by node through `mix_cell`, so a change to how live ops are run (e.g.
fusing them) is made once for NB201 and the DARTS space alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

# (input state j, edge index) per input of one node, in the order the node sums them.
NodeInputs = tuple[tuple[int, int], ...]
Alive = tuple[tuple[int, ...], ...]
Candidate = tuple[int, int]  # (edge index, op index)
# Called with (edge index, op index, op output) for every op a cell computes; the IIM hooks in here.
EdgeProbe = Callable[[int, int, torch.Tensor], None]


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
    weights: torch.Tensor | None,
    probe: EdgeProbe | None,
    none_op: int,
    empty: Callable[[], torch.Tensor],
) -> list[torch.Tensor]:
    """Append each node's mix of its live ops to `states` (the cell inputs) and return the list.

    `edges[e][o]` is op o of edge e. With `weights` (edges, ops) each op output is scaled by its weight;
    without, the node is the plain sum times 1/|O| of all ops, not of the survivors (IS-DARTS, spec §3.1).
    Masked ops are never run, and `none` (exact zeros) only when a probe needs its output. A node with no
    computed op takes `empty()`.
    """
    scale = 1.0 / len(edges[0])
    for _, inputs in node_inputs:
        total: torch.Tensor | None = None
        for j, edge in inputs:
            for op in alive[edge]:
                if op == none_op and probe is None:
                    continue
                out = edges[edge][op](states[j])
                if probe is not None:
                    probe(edge, op, out)
                out = out * weights[edge, op] if weights is not None else out
                total = out if total is None else total + out
        if total is None:
            total = empty()
        elif weights is None:
            total = total * scale
        states.append(total)
    return states
