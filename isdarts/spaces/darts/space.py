"""The DARTS (NASNet-like) space as a `Space`: normal and reduction cells, each kind with its own (14, 8) op
weights and mask; each node's 2+i inputs x 8 ops compete together and keep 2 (op, input) pairs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from isdarts.spaces.darts.genotype import INPUTS_PER_NODE, DartsGenotype
from isdarts.spaces.darts.ops import DARTS_SEARCH_OPS
from isdarts.spaces.darts.supernet import (
    CELL_KINDS,
    DARTS_EDGES,
    DartsSupernet,
    darts_genotype_from_masks,
    darts_node_subsets,
    derive_darts_genotype,
)
from isdarts.spaces.space import Space


def _describe(genotype: DartsGenotype) -> dict[str, Any]:
    """Parameter-free and skip inputs per node of each cell kind, and as totals those of the normal cell
    (where DARTS collapse shows)."""
    per_node = {
        "param_free_per_node": {k: genotype.param_free_per_node(k) for k in CELL_KINDS},
        "skip_per_node": {k: genotype.skips_per_node(k) for k in CELL_KINDS},
    }
    return {
        "param_free": sum(per_node["param_free_per_node"]["normal"]),
        "skip": sum(per_node["skip_per_node"]["normal"]),
        **per_node,
    }


def _from_weights(weights: Mapping[str, torch.Tensor]) -> DartsGenotype:
    with torch.no_grad():
        return derive_darts_genotype(weights["normal"], weights["reduce"])


SPACE = Space(
    name="darts",
    kinds=CELL_KINDS,
    edges=DARTS_EDGES,
    ops=DARTS_SEARCH_OPS,
    subsets=tuple(tuple(subset) for subset in darts_node_subsets()),
    keep=INPUTS_PER_NODE,
    build_supernet=lambda C, N, num_classes, *, fused, partial_channels=1, auxiliary=None: DartsSupernet(
        C, N, num_classes, affine=False, track=False, fused=fused, partial_channels=partial_channels,
        auxiliary=auxiliary,
    ),
    genotype_from_weights=_from_weights,
    genotype_from_masks=darts_genotype_from_masks,
    describe=_describe,
    derive_excludes=("none",),
    channels_last_on_cpu=True,  # its depthwise convs ran about 4x faster channels-last on this CPU
    result_modules=(
        "isdarts.spaces.darts.genotype", "isdarts.spaces.darts.ops", "isdarts.spaces.darts.supernet",
        "isdarts.spaces.darts.space", "isdarts.spaces.auxiliary",
    ),
)
