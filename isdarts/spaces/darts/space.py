"""The DARTS (NASNet-like) space as a `Space`: normal and reduction cells, each kind with its own (14, 8) op
weights and mask; each node's 2+i inputs x 8 ops compete together and keep 2 (op, input) pairs.

`darts_like_space` builds the same space over other candidate ops (per kind and edge): RobustDARTS's S1-S5
are one call each (isdarts/spaces/s1 ... s5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from isdarts.spaces.darts.genotype import INPUTS_PER_NODE, DartsGenotype
from isdarts.spaces.darts.ops import DARTS_SEARCH_OPS
from isdarts.spaces.darts.supernet import (
    CELL_KINDS,
    DARTS_EDGES,
    DartsSupernet,
    EdgeOps,
    check_edge_ops,
    darts_genotype_from_masks,
    darts_node_subsets,
    derive_darts_genotype,
)
from isdarts.spaces.space import Space

_DARTS_MODULES = (
    "isdarts.spaces.darts.genotype", "isdarts.spaces.darts.ops", "isdarts.spaces.darts.supernet",
    "isdarts.spaces.darts.space", "isdarts.spaces.auxiliary",
)


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


def darts_like_space(
    name: str, edge_ops: Mapping[str, Sequence[Sequence[str]]] | None = None, *, module: str | None = None
) -> Space:
    """The DARTS space with `edge_ops` ({"normal": 14 op lists, "reduce": 14 op lists}, search op names, every
    edge the same number of ops) as its candidates; None: the 8 DARTS ops everywhere. `module` is the module
    that defines the space (part of its searches' code fingerprint)."""
    tables: dict[str, EdgeOps] | None = None
    if edge_ops is not None:
        tables = {kind: check_edge_ops(kind, edge_ops[kind]) for kind in CELL_KINDS}
    rows = {row for table in (tables or {}).values() for row in table}
    uniform = tables is None or len(rows) == 1
    ops = DARTS_SEARCH_OPS if tables is None else next(iter(rows)) if uniform else tuple(
        f"column_{c}" for c in range(len(tables["normal"][0])))
    return Space(
        name=name,
        kinds=CELL_KINDS,
        edges=DARTS_EDGES,
        ops=ops,
        subsets=tuple(tuple(subset) for subset in darts_node_subsets(len(ops))),
        keep=INPUTS_PER_NODE,
        build_supernet=lambda C, N, num_classes, *, fused, partial_channels=1, auxiliary=None: DartsSupernet(
            C, N, num_classes, affine=False, track=False, fused=fused, partial_channels=partial_channels,
            auxiliary=auxiliary, edge_ops=tables,
        ),
        genotype_from_weights=lambda weights: _from_weights(weights, tables),
        genotype_from_masks=lambda masks: darts_genotype_from_masks(masks, tables),
        describe=_describe,
        derive_excludes=("none",),
        channels_last_on_cpu=True,  # its depthwise convs ran about 4x faster channels-last on this CPU
        result_modules=_DARTS_MODULES + ((module,) if module else ()),
        edge_ops=None if uniform else tables,
    )


def _from_weights(weights: Mapping[str, torch.Tensor], tables: Mapping[str, EdgeOps] | None) -> DartsGenotype:
    with torch.no_grad():
        return derive_darts_genotype(weights["normal"], weights["reduce"], tables)


SPACE = darts_like_space("darts")
