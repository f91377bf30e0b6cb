"""DARTS- (Chu et al., ICLR 2021; FAMILY.md "DARTS-"): DARTS with an auxiliary skip on every edge, weighted by
a coefficient β that decays over the search.

Each edge's output is Σ_o softmax(α_e)_o·o(x) + β_t·aux_e(x) (isdarts.spaces.auxiliary): aux_e is the
identity (`aux_op: skip`) or an identity-initialised 1x1 conv (`conv1`), and a learnable FactorizedReduce on
the DARTS space's stride-2 edges. The aux path is outside the softmax and has no α; it is on in the α step,
the weight step and evaluation alike, and never part of the genotype (plain DARTS derivation, from α alone).
Its modules exist only in the supernet this method asks for (`supernet_options`), and their weights are in
`model.parameters()`: trained by SGD and counted by the gradient clip, as in [DM] `model_search.py:MixedOp`.

β_t is set once per epoch, at its start, as [DM] `utils.py:DecayScheduler.step(epoch)` with t the 0-based
epoch and span = t_max − t_start: linear β0·(t_max − t)/span, cosine β0·(1 + cos(π t/span))/2, slow_cosine
β0·cos(π t/(2 span)), none β0. Before t_start β is β0; after t_stop it holds its value at t_stop (β0 when
t_stop < t_start). The formulas read t, not t − t_start ([DM]'s quirk, kept). With the defaults (t_max =
t_stop = the search's epochs E, linear) β goes 1, ..., 1/E and never reaches 0 in training.

The rest is DARTS first order (spec §4 machinery in `Darts`). Step order per space: [DM]'s DARTS-space code
takes the α step first; the NB201 port (FAMILY.md's assumption: §4 AutoDL recipe plus the aux path, aux =
identity on all 6 edges, each on its own edge's input) takes the weight step first. The valid batch is the
loop's (a random batch per step); [DM] cycles the valid loader instead.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.search.darts import Darts
from isdarts.spaces.auxiliary import AuxiliarySkip
from isdarts.spaces.space import Space

DECAYS = ("linear", "cosine", "slow_cosine", "none")


def beta_schedule(epoch: int, beta0: float, decay: str, t_start: int, t_stop: int, t_max: int) -> float:
    """β at the start of 0-based `epoch`: [DM]'s DecayScheduler after `step(e)` at every epoch e <= epoch."""
    if decay not in DECAYS:
        raise ValueError(f"unknown β decay {decay!r}; expected one of {', '.join(DECAYS)}")
    if decay == "none" or epoch < t_start:
        return beta0
    if epoch > t_stop:  # the scheduler holds the last value it set
        return beta0 if t_stop < t_start else beta_schedule(t_stop, beta0, decay, t_start, t_stop, t_max)
    span = t_max - t_start
    if span <= 0:
        raise ValueError(f"β decay {decay!r} needs t_max > t_start, got t_max={t_max}, t_start={t_start}")
    if decay == "linear":
        return beta0 * (t_max - epoch) / span
    if decay == "cosine":
        return beta0 * (1 + math.cos(math.pi * epoch / span)) / 2
    return beta0 * math.cos(math.pi / 2 * epoch / span)


class DartsMinus(Darts):
    """DARTS- on any space: the DARTS bi-level loop over a supernet with the β-weighted auxiliary path."""

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.aux_op = cfg.option("aux_op")
        built = getattr(model, "auxiliary", None)
        if built != self.aux_op:
            raise ValueError(f"DARTS- with aux_op={self.aux_op!r} needs a supernet built with "
                             f"auxiliary={self.aux_op!r}, got {built!r}")
        self.beta0 = float(cfg.option("beta0"))
        self.decay = cfg.option("decay")
        self.t_start = int(cfg.option("t_start"))
        # 0 stands for the search's epochs (t_stop = 0 itself would hold β0 throughout: decay `none` does that).
        self.t_stop = int(cfg.option("t_stop")) or cfg.epochs
        self.t_max = int(cfg.option("t_max")) or cfg.epochs
        if self.decay != "none" and self.t_max <= self.t_start:
            raise ValueError(f"DARTS- β decay {self.decay!r} needs t_max (here {self.t_max}; 0 = the search's "
                             f"epochs) > t_start ({self.t_start}); raise t_max or lower t_start")
        ref = self.alphas[0]
        # A device scalar, changed in place each epoch: a new β is a new input to a compiled forward, not a
        # recompile, and no host sync in the step.
        self.beta_value = self.beta_at(0)
        self.beta = torch.full((), self.beta_value, dtype=ref.dtype, device=ref.device)

    @classmethod
    def supernet_options(cls, cfg: SearchConfig) -> dict[str, Any]:
        return {"auxiliary": cfg.option("aux_op")}

    def beta_at(self, epoch: int) -> float:
        """β during 0-based `epoch` (see the module docstring)."""
        return beta_schedule(epoch, self.beta0, self.decay, self.t_start, self.t_stop, self.t_max)

    def forward_weights(self, training: bool = True) -> dict[str, AuxiliarySkip]:
        """softmax(α) per kind with the aux path at the current β; the same in training and evaluation."""
        return {kind: AuxiliarySkip(w, self.beta) for kind, w in self.arch_weights().items()}

    def set_epoch(self, epoch: int) -> float:
        self.beta_value = self.beta_at(epoch)
        self.beta.fill_(self.beta_value)
        return super().set_epoch(epoch)

    def end_epoch(self, epochs_done: int, iim_batches: Any) -> dict[str, Any]:
        return {**super().end_epoch(epochs_done, iim_batches), "aux_beta": self.beta_value}
