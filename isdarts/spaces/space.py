"""What a search method may know of a search space: the `Space` interface every space folder fills in.

A space is data plus a few functions: its cell kinds (each with its own op weights and mask), edges and ops,
which ops are parameter-free, which (edge, op) candidates compete in a selection step and how many of each
group survive, how to build its supernet, and how a genotype comes from per-kind op-weight tables or masks.
Methods talk to it and to the supernet interface below, never to a space by name, so one method class
runs on every space.

The supernet interface (both supernets implement it): `KINDS`; `num_cells(kind)`; `get_mask(kind)` (the live
(edges, ops) 0/1 buffer) and `set_mask(kind, mask)`; `forward(x, weights=None, probe=None)` returning
(features, logits), where `weights` maps each kind to one (edges, ops) table shared by its cells or a list of
one table per cell, or a strategy object (isdarts.spaces.mixing, isdarts.spaces.partial), and None mixes every
alive op with weight mask/|O| (IS-DARTS).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from isdarts.spaces.common import Candidate, alive_per_node

Genotype = Any  # Nb201Genotype, DartsGenotype: each has to_json() and str()


@dataclass(frozen=True)
class Space:
    """One search space, as the search methods and the search loop see it."""

    name: str
    kinds: tuple[str, ...]
    edges: tuple[str, ...]
    # The op in each column of α and the masks, where every edge of every kind has the same ops; where they
    # differ (`edge_ops`), column labels only ("column_0", ...): name ops by `op_name`.
    ops: tuple[str, ...]
    # The candidates that compete in a shrink or selection step (one edge on NB201, one node's inputs on the
    # DARTS space), and how many of each group the final cell keeps.
    subsets: tuple[tuple[Candidate, ...], ...]
    keep: int
    # (C, N, num_classes, *, fused, partial_channels=1) -> the supernet, its search cells built without affine
    # or running stats; partial_channels K > 1 builds the cells' ops at 1/K of the channels, for
    # `isdarts.spaces.partial.PartialChannels` weights (a ValueError unless K divides every stage's channels).
    build_supernet: Callable[..., nn.Module]
    # {kind: (edges, ops) op weights} -> the cell a DARTS-style argmax derivation picks.
    genotype_from_weights: Callable[[Mapping[str, torch.Tensor]], Genotype]
    # {kind: 0/1 mask} -> the cell of the surviving candidates (a GenotypeError unless exactly `keep` survive).
    genotype_from_masks: Callable[[Mapping[str, torch.Tensor]], Genotype]
    # genotype -> what a history records of it (parameter-free and skip counts; keys in record order).
    describe: Callable[[Genotype], dict[str, Any]]
    # The modules whose source decides a search's numbers on this space (its checkpoints' code fingerprint).
    result_modules: tuple[str, ...]
    # What `channels_last: auto` picks on CPU (on CUDA it follows fused_ops): measured per space (BENCHMARKS.md).
    channels_last_on_cpu: bool = False
    # Ops a cell derived from op weights never uses (the DARTS space's `none`: a node always keeps 2 inputs).
    derive_excludes: tuple[str, ...] = ()
    # "module:function" giving the space's benchmark table (lookup(genotype).accuracies()), if it has one.
    benchmark: str | None = None
    # Whether the weight step's gradient clip counts α's gradient too (AutoDL's NB201 code clips every
    # parameter, α included; the DARTS-space codes keep α out of model.parameters()).
    clip_alpha_with_weights: bool = False
    # Per kind, per edge, the op of each column, for spaces whose edges differ (RobustDARTS's S1); None: `ops`.
    edge_ops: Mapping[str, tuple[tuple[str, ...], ...]] | None = None

    def op_name(self, kind: str, edge: int, op: int) -> str:
        """The name of column `op` of `edge` in cells of `kind`."""
        return self.ops[op] if self.edge_ops is None else self.edge_ops[kind][edge][op]

    def op_table(self, kind: str) -> tuple[tuple[str, ...], ...]:
        """Per edge of `kind`, its ops in column order."""
        return (self.ops,) * len(self.edges) if self.edge_ops is None else tuple(self.edge_ops[kind])

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    @property
    def flat(self) -> bool:
        """A one-kind space records its per-kind values without the kind level (NB201's history format)."""
        return len(self.kinds) == 1

    def record(self, per_kind: Mapping[str, Any]) -> Any:
        """Per-kind values ({kind: value}) in the shape histories and checkpoints use."""
        return per_kind[self.kinds[0]] if self.flat else {kind: per_kind[kind] for kind in self.kinds}

    def per_kind(self, recorded: Any) -> dict[str, Any]:
        """The inverse of `record`."""
        return {self.kinds[0]: recorded} if self.flat else {kind: recorded[kind] for kind in self.kinds}

    def masks(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The supernet's live mask of every kind."""
        return {kind: model.get_mask(kind) for kind in self.kinds}

    def shrinking_done(self, masks: Mapping[str, torch.Tensor]) -> bool:
        """True once every comparison group of every kind is down to its `keep` survivors."""
        return all(n <= self.keep for kind in self.kinds for n in alive_per_node(masks[kind], self.subsets))
