"""S-DARTS (spec §3.5, paper App. B): shrinking without the IIM, on both spaces.

DARTS-style α (first order) mixed by a softmax over the alive ops only, with IS-DARTS's shrink schedule;
each shrink step masks the smallest α among the alive candidates of every comparison subset: per edge
keeping 1 on NB201, per node keeping 2 on the DARTS space (each cell kind's mask on its own).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from isdarts.config.search import SearchConfig
from isdarts.search.base import Batches
from isdarts.search.darts import DartsDartsSpace, DartsNb201
from isdarts.search.shrink import Candidate, ShrinkResult, shrink_epochs, shrink_step, step_at
from isdarts.spaces.darts.genotype import INPUTS_PER_NODE, DartsGenotype
from isdarts.spaces.darts.ops import DARTS_SEARCH_OPS
from isdarts.spaces.darts.supernet import CELL_KINDS, DARTS_EDGES, DartsSupernet
from isdarts.spaces.nb201.genotype import NB201_EDGES, NB201_OPS
from isdarts.spaces.nb201.supernet import Nb201Supernet, per_edge_subsets


def _schedule(cfg: SearchConfig) -> list[int]:
    return shrink_epochs(cfg.epochs, cfg.shrink.steps, cfg.shrink.interval, cfg.shrink.anchor)


def _shrink_by_alpha(
    mask: torch.Tensor, alpha: torch.Tensor, subsets: Sequence[Sequence[Candidate]], keep: int, steps: int, step: int
) -> ShrinkResult:
    # shrink_step removes the largest score, so rank by -α to remove the smallest α.
    return shrink_step(mask, -alpha.detach().double(), subsets, keep=keep, steps=steps, step=step)


class SDartsNb201(DartsNb201):
    """S-DARTS on NB201: masked softmax over each edge's alive ops, one op per edge after the last step."""

    def __init__(self, model: Nb201Supernet, cfg: SearchConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(model, cfg, generator)
        self.schedule = _schedule(cfg)
        self.subsets = per_edge_subsets()

    def arch_weights(self) -> torch.Tensor:
        """Softmax over the alive ops only: masked logits are -inf, so they get exactly zero weight."""
        return torch.softmax(self.alpha.masked_fill(self.model.mask == 0, float("-inf")), dim=-1)

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        record = super().end_epoch(epochs_done, iim_batches)
        step = step_at(epochs_done, self.schedule)
        if step is not None:
            result = _shrink_by_alpha(self.model.mask, self.alpha, self.subsets, 1, len(self.schedule), step)
            self.model.set_mask(result.mask)
            record["shrink_step"] = step
            record["pruned"] = [[NB201_EDGES[e], NB201_OPS[o]] for e, o in result.pruned]
        return record


class SDartsDartsSpace(DartsDartsSpace):
    """S-DARTS on the DARTS space: each scheduled step shrinks the normal and the reduction mask separately,
    masking in every node the ceil((alive - 2) / steps left) alive candidates with the smallest α."""

    model: DartsSupernet

    def __init__(self, model: DartsSupernet, cfg: SearchConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(model, cfg, generator)
        self.schedule = _schedule(cfg)
        self.subsets = model.node_subsets()

    def arch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax over each edge's alive ops (masked logits -inf); an edge with no alive op mixes with zeros."""
        normal, reduce = (
            self._masked_softmax(a, self.model.get_mask(kind)) for kind, a in zip(CELL_KINDS, self.alphas, strict=True)
        )
        return normal, reduce

    @staticmethod
    def _masked_softmax(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        masked = mask == 0
        # Node-wise shrinking can mask a whole edge; an all -inf row would give NaN weights and, through the
        # softmax backward, NaN α gradients. Such a row takes its plain softmax times the all-zero mask row.
        dead = masked.all(dim=-1, keepdim=True)
        weights = torch.softmax(alpha.masked_fill(masked & ~dead, float("-inf")), dim=-1)
        return weights * mask.to(weights.dtype)

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        record = super().end_epoch(epochs_done, iim_batches)
        step = step_at(epochs_done, self.schedule)
        if step is None:
            return record
        for kind, alpha in zip(CELL_KINDS, self.alphas, strict=True):
            result = _shrink_by_alpha(
                self.model.get_mask(kind), alpha, self.subsets, INPUTS_PER_NODE, len(self.schedule), step
            )
            self.model.set_mask(kind, result.mask)
            record["pruned"][kind] = [[DARTS_EDGES[e], DARTS_SEARCH_OPS[o]] for e, o in result.pruned]
        record["shrink_step"] = step
        return record

    def genotype(self) -> DartsGenotype:
        """The survivors once shrinking is done (`none` included if it survived: S-DARTS ranks by α alone);
        before that, the DARTS derivation on the masked weights. Alive ops outweigh masked ones (weight 0),
        so it picks alive ops unless a node has fewer than 2 edges with an alive non-`none` op."""
        if self.model.shrinking_done:
            return self.model.genotype_from_masks()
        return super().genotype()
