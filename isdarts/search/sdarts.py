"""S-DARTS (spec §3.5, paper App. B): shrinking without the IIM, on any space.

DARTS-style α (first order) mixed by a softmax over the alive ops only, with IS-DARTS's shrink schedule;
each shrink step masks, in every comparison group of every cell kind (each kind's mask on its own), the
ceil((alive - keep) / steps left) alive candidates with the smallest α: per edge keeping 1 on NB201, per
node keeping 2 on the DARTS space.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig, shrink_epochs
from isdarts.search.base import Batches
from isdarts.search.darts import Darts, masked_softmax
from isdarts.search.shrink import shrink_step, step_at
from isdarts.spaces.space import Genotype, Space


class SDarts(Darts):
    """S-DARTS: masked softmax over each edge's alive ops; the survivors once shrinking is over."""

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.schedule = shrink_epochs(cfg.epochs, cfg.shrink.steps, cfg.shrink.interval, cfg.shrink.anchor)

    def relax(self, kind: str, alpha: torch.Tensor) -> torch.Tensor:
        """Softmax over the alive ops only: masked logits are -inf, so they get exactly zero weight."""
        return masked_softmax(alpha, self.model.get_mask(kind))

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        record = super().end_epoch(epochs_done, iim_batches)
        step = step_at(epochs_done, self.schedule)
        if step is None:
            return record
        space, pruned = self.space, {}
        for kind, alpha in zip(self.kinds, self.alphas, strict=True):
            # shrink_step removes the largest score, so rank by -α to remove the smallest α.
            result = shrink_step(
                self.model.get_mask(kind), -alpha.detach().double(), space.subsets, keep=space.keep,
                steps=len(self.schedule), step=step,
            )
            self.model.set_mask(kind, result.mask)
            pruned[kind] = [[space.edges[e], space.op_name(kind, e, o)] for e, o in result.pruned]
        record["shrink_step"] = step
        record["pruned"] = space.record(pruned)
        return record

    def genotype(self) -> Genotype:
        """The survivors once shrinking is done (`none` included if it survived: S-DARTS ranks by α alone);
        before that, the DARTS derivation on the masked weights (alive ops outweigh masked ones, weight 0)."""
        masks = self.space.masks(self.model)
        if self.space.shrinking_done(masks):
            return self.space.genotype_from_masks(masks)
        return super().genotype()
