"""The NAS-Bench-201 search supernet (spec §1): stem, 3 stages of N cells, residual reductions, head.

All searchable cells share one op-mixing encoding. IS-DARTS passes none (uniform 1/|O| on the ops that
its binary mask keeps); DARTS-style methods pass a (6, 5) weight matrix, or one per cell. Ops that the
mask removes are never computed: a pruned op costs nothing.

With `fused=True` (the default) a cell runs, per input node, one ReLU, one 1x1 and one 3x3 convolution
for the live convs of all edges leaving it (each with one BN) and one shared avg-pool; `fused=False` runs
every op as its own module, the reference the fused path is tested against.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from torch import nn

from isdarts.errors import GenotypeError
from isdarts.spaces.auxiliary import auxiliary_modules, check_auxiliary, resolve_auxiliary
from isdarts.spaces.common import (
    Alive,
    Candidate,
    GroupRunner,
    OpProbe,
    alive_ops,
    check_partial_channels,
    mix_cell,
    mix_cell_fused,
    mix_cell_partial,
    mix_cell_partial_fused,
    resolve_partial,
)
from isdarts.spaces.fused import avg_pool_3x3, batch_norm_stacked, conv_shared, split_blocks
from isdarts.spaces.nb201.genotype import NB201_EDGES, NB201_OPS, Nb201Genotype
from isdarts.spaces.nb201.ops import ResNetBasicBlock, make_nb201_op

NUM_EDGES = len(NB201_EDGES)
NUM_OPS = len(NB201_OPS)
NONE_OP = NB201_OPS.index("none")
_CONV_OPS = frozenset(NB201_OPS.index(name) for name in ("nor_conv_1x1", "nor_conv_3x3"))
_POOL_OP = NB201_OPS.index("avg_pool_3x3")
# (node i, [(input j, edge index)]) in the order the cell computes them.
_NODE_INPUTS = tuple(
    (i, tuple((j, NB201_EDGES.index(f"{i}<-{j}")) for j in range(i))) for i in range(1, 4)
)

_STRIDES = (1,) * NUM_EDGES  # no edge inside an NB201 cell downsamples

KIND = "cell"  # NB201's one cell kind: every search cell shares one mask and one op-weight table
CellWeights = torch.Tensor | Sequence[torch.Tensor] | None


def per_edge_subsets() -> list[list[Candidate]]:
    """NB201's comparison subsets for shrinking: each edge on its own."""
    return [[(e, o) for o in range(NUM_OPS)] for e in range(NUM_EDGES)]


def derive_nb201_genotype(weights: torch.Tensor) -> Nb201Genotype:
    """Per edge, the argmax of the (6, 5) op weights over all ops, `none` included (DARTS, spec §4)."""
    return Nb201Genotype.from_op_indices(weights.argmax(dim=-1).tolist())


def nb201_genotype_from_mask(mask: torch.Tensor) -> Nb201Genotype:
    """Per edge, the one op a (6, 5) 0/1 mask keeps; a GenotypeError if an edge keeps more or none."""
    rows = mask.detach().cpu().tolist()
    ops = []
    for edge, row in zip(NB201_EDGES, rows, strict=True):
        alive = [o for o, m in enumerate(row) if m > 0.5]
        if len(alive) != 1:
            raise GenotypeError(
                f"NB201 edge {edge} keeps {len(alive)} ops {[NB201_OPS[o] for o in alive]}, expected exactly 1 "
                "(finish shrinking first)"
            )
        ops.append(NB201_OPS[alive[0]])
    return Nb201Genotype(tuple(ops))


class Nb201SearchCell(nn.Module):
    """A 4-node DAG whose 6 edges each hold all 5 candidate ops; `probe` sees ops as cell `cell_index`.

    With `partial_channels` K > 1 the ops are built for channels/K channels and the cell takes
    `PartialChannels` weights of that K (isdarts.spaces.partial).
    """

    def __init__(
        self, channels: int, *, affine: bool, track: bool, fused: bool = True, partial_channels: int = 1
    ) -> None:
        super().__init__()
        if fused and track:
            raise ValueError("fused cells need BNs without running statistics (track=False); pass fused=False")
        check_partial_channels([channels], partial_channels)
        self.fused = fused
        self.channels = channels
        self.partial_channels = partial_channels
        op_channels = channels // partial_channels
        self.edges = nn.ModuleList(
            nn.ModuleList(make_nb201_op(op, op_channels, affine=affine, track=track) for op in NB201_OPS)
            for _ in NB201_EDGES
        )
        self.aux: nn.ModuleList | None = None  # DARTS-'s auxiliary path, see add_auxiliary

    def add_auxiliary(self, op: str) -> None:
        """Give every edge DARTS-'s aux module (isdarts.spaces.auxiliary); the cell then takes only
        `AuxiliarySkip` weights."""
        self.aux = auxiliary_modules(op, self.channels, _STRIDES)

    def forward(
        self,
        x: torch.Tensor,
        alive: Alive,
        weights: torch.Tensor | None,
        probe: OpProbe | None = None,
        cell_index: Hashable = 0,
    ) -> torch.Tensor:
        def empty() -> torch.Tensor:
            return torch.zeros_like(x)

        weights, aux = resolve_auxiliary(weights, self.aux)
        weights, partial = resolve_partial(weights, self.partial_channels)
        states = [x]
        if partial is not None:  # partial channels (isdarts.spaces.partial): its own per-edge loops
            if not self.fused:
                return mix_cell_partial(
                    self.edges, _NODE_INPUTS, states, alive, partial, probe, cell_index, NONE_OP, _STRIDES
                )[-1]
            sources: list[torch.Tensor] = []  # the ops' inputs: each state's first C/K channels
            mix_cell_partial_fused(
                self._group_runner(sources), sources, _NODE_INPUTS, states, alive, partial, probe, cell_index,
                NONE_OP, _STRIDES,
            )
            return states[-1]
        if not self.fused:
            return mix_cell(
                self.edges, _NODE_INPUTS, states, alive, weights, probe, cell_index, NONE_OP, empty, aux
            )[-1]
        mix_cell_fused(
            self._group_runner(states), _NODE_INPUTS, states, alive, weights, probe, cell_index, NONE_OP, NUM_OPS,
            empty, aux,
        )
        return states[-1]

    def _group_runner(self, states: list[torch.Tensor]) -> GroupRunner:
        """Runs one op kind for the edges leaving state j, reading state j from `states`."""
        relu: dict[int, torch.Tensor] = {}  # one ReLU per input node, shared by its 1x1 and 3x3 convs

        def run_group(j: int, op: int, edges: Sequence[int]) -> torch.Tensor:
            # Skip and avg-pool have no weights: one output shared by every edge leaving j.
            if op == _POOL_OP:
                return avg_pool_3x3(states[j], 1).unsqueeze(1)
            if op not in _CONV_OPS:
                return states[j].unsqueeze(1)
            if j not in relu:
                relu[j] = torch.relu(states[j])
            units = [self.edges[e][op] for e in edges]
            y = conv_shared(relu[j], [unit[1] for unit in units])
            return split_blocks(batch_norm_stacked(y, [unit[2] for unit in units]), len(edges))

        return run_group


class Nb201Supernet(nn.Module):
    """NB201 macro network: one cell kind, "cell", whose (6, 5) binary op mask is a buffer (`mask`).

    The supernet interface of isdarts.spaces.space: forward(x, weights, probe) returns (pooled features, logits).
    `fused` picks the fused cells (see above). `partial_channels` K > 1 builds the cells' ops at 1/K of each
    stage's channels, for `PartialChannels` weights of that K (isdarts.spaces.partial); K=1 is the full network.
    `auxiliary` ("skip" or "conv1") gives every cell edge DARTS-'s aux module, for `AuxiliarySkip` weights
    (isdarts.spaces.auxiliary); None (the default) builds none.
    """

    KINDS = ("cell",)

    def __init__(
        self, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10, *, affine: bool = False,
        track: bool = False, fused: bool = True, partial_channels: int = 1, auxiliary: str | None = None,
    ) -> None:
        super().__init__()
        self.channels, self.cells_per_stage, self.num_classes = channels, cells_per_stage, num_classes
        self.partial_channels = partial_channels
        check_partial_channels([channels, 2 * channels, 4 * channels], partial_channels)
        check_auxiliary(auxiliary)
        if auxiliary is not None and partial_channels > 1:
            raise ValueError(f"the auxiliary path and partial channels (K={partial_channels}) do not combine; "
                             "build with partial_channels=1 or auxiliary=None")
        self.auxiliary = auxiliary
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResNetBasicBlock(c, 2 * c, stride=2))
                c *= 2
            layers.extend(
                Nb201SearchCell(c, affine=affine, track=track, fused=fused, partial_channels=partial_channels)
                for _ in range(cells_per_stage)
            )
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        self.register_buffer("mask", torch.ones(NUM_EDGES, NUM_OPS))
        self._alive: Alive = ()
        self._refresh_alive()
        # A checkpoint load replaces the mask buffer; keep the host-side alive lists in step with it.
        self.register_load_state_dict_post_hook(lambda module, _incompatible: module._refresh_alive())
        if auxiliary is not None:
            # Built last, so every other module is initialised as in a supernet without the aux path.
            for layer in self.layers:
                if isinstance(layer, Nb201SearchCell):
                    layer.add_auxiliary(auxiliary)

    @property
    def num_search_cells(self) -> int:
        return 3 * self.cells_per_stage

    def num_cells(self, kind: str) -> int:
        """How many cells share the mask and op weights of `kind` (all 3N search cells)."""
        _check_kind(kind)
        return self.num_search_cells

    def get_mask(self, kind: str) -> torch.Tensor:
        """The (6, 5) mask buffer (the live buffer: use set_mask to change it)."""
        _check_kind(kind)
        return self.mask

    @property
    def alive(self) -> dict[str, Alive]:
        """Per kind, per edge, the indices of the ops the mask keeps (host-side: no device sync per step)."""
        return {KIND: self._alive}

    def set_mask(self, kind: str, mask: torch.Tensor) -> None:
        """Replace the mask; every edge must keep at least one op."""
        _check_kind(kind)
        mask = mask.to(self.mask.device, self.mask.dtype)
        if mask.shape != self.mask.shape or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"mask must be a {tuple(self.mask.shape)} tensor of 0/1, got {mask}")
        if bool((mask.sum(1) == 0).any()):
            raise ValueError("mask would leave an edge with no op; every edge must keep at least one")
        self.mask.copy_(mask)
        self._refresh_alive()

    def _refresh_alive(self) -> None:
        self._alive = alive_ops(self.mask)

    def forward(
        self, x: torch.Tensor, weights: Mapping[str, CellWeights] | None = None, probe: OpProbe | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`weights` = {"cell": (6, 5) op weights, or one per search cell}; None mixes by the mask with 1/|O|."""
        w_kind = None if weights is None else weights[KIND]
        per_cell = isinstance(w_kind, (list, tuple))
        if per_cell and len(w_kind) != self.num_search_cells:
            raise ValueError(f"expected {self.num_search_cells} per-cell weight tensors, got {len(w_kind)}")
        h = self.stem(x)
        cell_index = 0
        for layer in self.layers:
            if isinstance(layer, Nb201SearchCell):
                w = w_kind[cell_index] if per_cell else w_kind
                h = layer(h, self._alive, w, probe, (KIND, cell_index))
                cell_index += 1
            else:
                h = layer(h)
        features = self.pool(self.head(h)).flatten(1)
        return features, self.classifier(features)


def _check_kind(kind: str) -> None:
    if kind != KIND:
        raise ValueError(f"NB201 has one cell kind, {KIND!r}; got {kind!r}")
