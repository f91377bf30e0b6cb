"""β-DARTS (Ye et al., CVPR 2022; FAMILY.md "Part: others.md", "## 2. β-DARTS"): DARTS first order whose α loss
adds the beta-decay regulariser λ_t·L_β.

L_β(α) = mean over the rows of α of logsumexp_o(α_{e,o}), a smooth maximum; its gradient is softmax(α_e)/E, so
each α step decays every α in proportion to its own activated weight β = softmax(α), the largest the most.
λ_t = lambda_max·t/ramp_epochs with t the 0-based epoch (the official 50·t/100, whose denominator does not follow
the number of epochs; not capped). The term enters the α loss only (`Darts.arch_penalty`), never the weight step.
Official code: `Sunshine-Ye/Beta-DARTS` `optimizers/darts/architect.py` (`mlc_loss`, `_backward_step`) with
`nasbench201/train_search.py`.

Choices where the spec leaves one:
- Several cell kinds (the DARTS space): `reduce` mean_all_rows stacks the normal and reduction α and averages over
  all 28 rows (the released DARTS-space code passes the α list to logsumexp and cannot run); sum_of_means adds
  the two per-kind means (2x larger).
- Ops: `include_none` true (the default on both spaces) searches the space's every op, the DARTS space's `none`
  included and dropped at derivation; false masks `none` out for the whole search (the repo's 7-op `s5`), and
  the softmax and L_β then run over the other ops only.
- The α step comes first in each step (`step_order`), as in the official `train()`; the weight step's clip
  counts α where the space's reference code does (NB201: α is a network parameter there).
- The cosine learning rate is the standard per-epoch one (the official scheduler steps at the epoch start).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.search.base import Batches
from isdarts.search.darts import Darts, exclude_ops, masked_softmax
from isdarts.spaces.space import Space

REDUCTIONS = ("mean_all_rows", "sum_of_means")


def lambda_at(epoch: int, lambda_max: float, ramp_epochs: int) -> float:
    """λ of 0-based `epoch`: lambda_max·epoch/ramp_epochs (uncapped, as the official code)."""
    return lambda_max * epoch / ramp_epochs


def beta_loss(
    alphas: Sequence[torch.Tensor], masks: Sequence[torch.Tensor] | None = None, reduce: str = "mean_all_rows"
) -> torch.Tensor:
    """L_β: per row of each α, the logsumexp over its alive ops (all ops without masks), reduced over the rows.

    mean_all_rows: the mean over every row of every kind; sum_of_means: the sum of the per-kind means.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"β-DARTS reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
    rows = []
    for i, alpha in enumerate(alphas):
        if masks is not None:
            alpha = alpha.masked_fill(masks[i] == 0, float("-inf"))
        rows.append(torch.logsumexp(alpha, dim=-1))
    if reduce == "mean_all_rows":
        return torch.cat(rows).mean()
    return torch.stack([r.mean() for r in rows]).sum()


class BetaDarts(Darts):
    """β-DARTS on any space: DARTS first order plus λ_t·L_β in the α loss."""

    first_order_only = True

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.lambda_max = float(cfg.option("lambda_max"))
        self.ramp_epochs = int(cfg.option("ramp_epochs"))
        if self.ramp_epochs < 1:
            raise ValueError(f"β-DARTS ramp_epochs must be >= 1 (official: 100), got {self.ramp_epochs}")
        self.reduce = cfg.option("reduce")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"β-DARTS reduce must be one of {', '.join(REDUCTIONS)}, got {self.reduce!r}")
        if not cfg.option("include_none") and "none" in space.ops:
            exclude_ops(model, space, ["none"])
        self.lam = lambda_at(0, self.lambda_max, self.ramp_epochs)
        self.add_running("beta_loss")

    def relax(self, kind: str, alpha: torch.Tensor) -> torch.Tensor:
        """Softmax over the alive ops (all of them unless `none` is excluded)."""
        return masked_softmax(alpha, self.model.get_mask(kind))

    def penalty_value(self) -> torch.Tensor:
        """L_β of the current α over the alive ops."""
        masks = [self.model.get_mask(kind) for kind in self.kinds]
        return beta_loss(self.alphas, masks, self.reduce)

    def arch_penalty(self) -> torch.Tensor:
        value = self.penalty_value()
        self.accumulate("beta_loss", value)
        return self.lam * value

    def set_epoch(self, epoch: int) -> float:
        self.lam = lambda_at(epoch, self.lambda_max, self.ramp_epochs)
        return super().set_epoch(epoch)

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        """Adds λ_t and the epoch's mean L_β (over its α steps) to the DARTS record."""
        steps, total = self.running_counts["beta_loss"], self.running["beta_loss"].clone()
        record = super().end_epoch(epochs_done, iim_batches)
        record["lambda"] = self.lam
        record["beta_loss"] = (total / steps).item() if steps else None
        return record
