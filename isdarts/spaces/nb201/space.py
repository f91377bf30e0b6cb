"""NAS-Bench-201 as a `Space`: one cell kind shared by all 15 search cells, 6 edges of 5 ops, each edge
its own comparison group keeping 1 op, and the 200-epoch benchmark table for the cells it finds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from isdarts.spaces.nb201.genotype import NB201_EDGES, NB201_OPS, Nb201Genotype
from isdarts.spaces.nb201.supernet import (
    KIND,
    Nb201Supernet,
    derive_nb201_genotype,
    nb201_genotype_from_mask,
    per_edge_subsets,
)
from isdarts.spaces.space import Space


def _describe(genotype: Nb201Genotype) -> dict[str, Any]:
    return {"param_free": genotype.param_free_count(), "skip": genotype.skip_count()}


def _from_weights(weights: Mapping[str, torch.Tensor]) -> Nb201Genotype:
    return derive_nb201_genotype(weights[KIND])


def _from_masks(masks: Mapping[str, torch.Tensor]) -> Nb201Genotype:
    return nb201_genotype_from_mask(masks[KIND])


SPACE = Space(
    name="nb201",
    kinds=(KIND,),
    edges=NB201_EDGES,
    ops=NB201_OPS,
    subsets=tuple(tuple(subset) for subset in per_edge_subsets()),
    keep=1,
    build_supernet=lambda C, N, num_classes, *, fused, partial_channels=1, auxiliary=None: Nb201Supernet(
        C, N, num_classes, affine=False, track=False, fused=fused, partial_channels=partial_channels,
        auxiliary=auxiliary,
    ),
    genotype_from_weights=_from_weights,
    genotype_from_masks=_from_masks,
    describe=_describe,
    result_modules=(
        "isdarts.spaces.nb201.genotype", "isdarts.spaces.nb201.ops", "isdarts.spaces.nb201.supernet",
        "isdarts.spaces.nb201.space", "isdarts.spaces.auxiliary",
        "isdarts.benchmark.nb201",  # the argmax cell's benchmark accuracies in the history
    ),
    benchmark="isdarts.benchmark.nb201:default_table",
    clip_alpha_with_weights=True,
)
