"""The NAS-Bench-201 search supernet (spec §1): stem, 3 stages of N cells, residual reductions, head.

All searchable cells share one op-mixing encoding. IS-DARTS passes none (uniform 1/|O| on the ops that
its binary mask keeps); DARTS-style methods pass a (6, 5) weight matrix, or one per cell. Ops that the
mask removes are never computed: a pruned op costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from isdarts.spaces.common import Alive, Candidate, alive_ops, mix_cell
from isdarts.spaces.nb201.genotype import NB201_EDGES, NB201_OPS, Nb201Genotype
from isdarts.spaces.nb201.ops import ResNetBasicBlock, make_nb201_op

# Called with (cell index, edge index, op index, op output) for every op computed; the IIM uses it.
OpProbe = Callable[[int, int, int, torch.Tensor], None]

NUM_EDGES = len(NB201_EDGES)
NUM_OPS = len(NB201_OPS)
NONE_OP = NB201_OPS.index("none")
# (node i, [(input j, edge index)]) in the order the cell computes them.
_NODE_INPUTS = tuple(
    (i, tuple((j, NB201_EDGES.index(f"{i}<-{j}")) for j in range(i))) for i in range(1, 4)
)

CellWeights = torch.Tensor | Sequence[torch.Tensor] | None


def per_edge_subsets() -> list[list[Candidate]]:
    """NB201's comparison subsets for shrinking: each edge on its own."""
    return [[(e, o) for o in range(NUM_OPS)] for e in range(NUM_EDGES)]


def derive_nb201_genotype(weights: torch.Tensor) -> Nb201Genotype:
    """Per edge, the argmax of the (6, 5) op weights over all ops, `none` included (DARTS, spec §4)."""
    return Nb201Genotype.from_op_indices(weights.argmax(dim=-1).tolist())


class Nb201SearchCell(nn.Module):
    """A 4-node DAG whose 6 edges each hold all 5 candidate ops."""

    def __init__(self, channels: int, *, affine: bool, track: bool) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            nn.ModuleList(make_nb201_op(op, channels, affine=affine, track=track) for op in NB201_OPS)
            for _ in NB201_EDGES
        )

    def forward(
        self,
        x: torch.Tensor,
        alive: Alive,
        weights: torch.Tensor | None,
        probe: OpProbe | None = None,
        cell_index: int = 0,
    ) -> torch.Tensor:
        edge_probe = None if probe is None else partial(probe, cell_index)
        nodes = mix_cell(
            self.edges, _NODE_INPUTS, [x], alive, weights, edge_probe, NONE_OP, lambda: torch.zeros_like(x)
        )
        return nodes[-1]


class Nb201Supernet(nn.Module):
    """NB201 macro network with a shared (6, 5) binary op mask registered as a buffer.

    forward(x, weights, probe) returns (pooled features, logits).
    """

    # What a search records about the space: edge and op names, and no per-kind masks.
    EDGES = NB201_EDGES
    OPS = NB201_OPS
    KINDS = None

    def __init__(
        self, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10, *, affine: bool = False,
        track: bool = False,
    ) -> None:
        super().__init__()
        self.channels, self.cells_per_stage, self.num_classes = channels, cells_per_stage, num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResNetBasicBlock(c, 2 * c, stride=2))
                c *= 2
            layers.extend(Nb201SearchCell(c, affine=affine, track=track) for _ in range(cells_per_stage))
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        self.register_buffer("mask", torch.ones(NUM_EDGES, NUM_OPS))
        self._alive: Alive = ()
        self._refresh_alive()
        # A checkpoint load replaces the mask buffer; keep the host-side alive lists in step with it.
        self.register_load_state_dict_post_hook(lambda module, _incompatible: module._refresh_alive())

    @property
    def num_search_cells(self) -> int:
        return 3 * self.cells_per_stage

    @property
    def alive(self) -> Alive:
        """Per edge, the indices of the ops the mask keeps (a host-side copy: no device sync per step)."""
        return self._alive

    def set_mask(self, mask: torch.Tensor) -> None:
        mask = mask.to(self.mask.device, self.mask.dtype)
        if mask.shape != self.mask.shape or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"mask must be a {tuple(self.mask.shape)} tensor of 0/1, got {mask}")
        if bool((mask.sum(1) == 0).any()):
            raise ValueError("mask would leave an edge with no op; every edge must keep at least one")
        self.mask.copy_(mask)
        self._refresh_alive()

    def _refresh_alive(self) -> None:
        self._alive = alive_ops(self.mask)

    def alive_json(self) -> Any:
        """The mask as nested 0/1 lists, for the search history."""
        return self.mask.int().tolist()

    @property
    def shrinking_done(self) -> bool:
        """True once every edge is down to a single op."""
        return all(len(ops) == 1 for ops in self._alive)

    def genotype_from_mask(self) -> Nb201Genotype:
        """Per edge, the first op the mask keeps: the single survivor once shrinking is over."""
        return Nb201Genotype(tuple(NB201_OPS[ops[0]] for ops in self._alive))

    def forward(
        self, x: torch.Tensor, weights: CellWeights = None, probe: OpProbe | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        per_cell = isinstance(weights, (list, tuple))
        if per_cell and len(weights) != self.num_search_cells:
            raise ValueError(f"expected {self.num_search_cells} per-cell weight tensors, got {len(weights)}")
        h = self.stem(x)
        cell_index = 0
        for layer in self.layers:
            if isinstance(layer, Nb201SearchCell):
                w = weights[cell_index] if per_cell else weights
                h = layer(h, self._alive, w, probe, cell_index)
                cell_index += 1
            else:
                h = layer(h)
        features = self.pool(self.head(h)).flatten(1)
        return features, self.classifier(features)
