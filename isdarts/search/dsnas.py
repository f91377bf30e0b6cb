"""DSNAS (Hu, Xie et al., CVPR 2020; FAMILY.md "Sampling: DSNAS"; official code SNAS-Series
`DSNAS/network.py:ShuffleNetV2_OneShot.forward` and the `--dsnas` branch of `SNAS/model_search.py`): one hard
child per step, its weights and α trained on the same batch.

Each step draws, per cell kind, Z_e ~ OneHotCategorical(softmax(α_e)) for every edge (no Gumbel, no τ), shared by
all cells of the kind, and runs only the sampled op of each edge, scaled by Z_e,k = 1 (`SampledPath`: the other
ops are never computed). One backward of the CE gives the child's weight gradients and r_e = ∂CE/∂Z_e,k (summed
over every cell that uses the kind's Z; 0 for an edge that sampled `none`, which runs nothing). α's gradient is
r_e·∇_α log p_α(Z_e) = r_e·(onehot(k_e) - softmax(α_e)), the official L_α = Σ_e log s_e differentiated with Z
held constant and scaled by r_e; it is computed in closed form here, so L_α never touches Z's gradient. Weights
step by SGD and α by its optimiser on the same step (single level).

Where the spec leaves a choice (NB201 has no official port; FAMILY.md's proposed one): α is N(1, 0.01); α's
optimiser is Adam at `arch_lr` (NB201: 1e-3 with betas (0.5, 0.999), no decay, from the ImageNet config, hence
no α clip; DARTS space: the SNAS search script's distributed-path Adam 3e-4, decay 1e-3, clip 10); the data is
the training half on NB201 (`data`); the FLOPs loss (ImageNet's 290 M threshold) is not implemented and
`early_fix_arch` (off) freezes, at each epoch start, every edge whose top-1 minus top-2 probability is >= 0.3 to
its argmax op (its α row restored each epoch to the value it had when frozen). Evaluation runs the argmax child
(the official `gen_max_child`). The genotype follows `derive` as for SNAS: `edge_all` (default; the official
CIFAR child keeps all 14 edges, one op each, `none` edges dropped) or `top2_no_none`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.search.gdas import argmax_path
from isdarts.search.snas import SingleLevel
from isdarts.spaces.mixing import SampledPath
from isdarts.spaces.space import Space

EARLY_FIX_MARGIN = 0.3  # DSNAS/train_imagenet.py: top-1 minus top-2 probability that freezes an edge


def one_hot_sample(
    alpha: torch.Tensor, generator: torch.Generator, fixed: dict[int, int] | None = None
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Z ~ OneHotCategorical(softmax(α)) per row from `generator` (drawn on the CPU), with the rows in `fixed`
    forced to their op: (Z as an exact one-hot leaf on α's device that requires grad, the sampled indices)."""
    probs = torch.softmax(alpha.detach().double().cpu(), dim=-1)
    index = torch.multinomial(probs, 1, generator=generator).squeeze(1).tolist()
    for edge, op in (fixed or {}).items():
        index[edge] = op
    z = torch.zeros(alpha.shape, dtype=alpha.dtype)
    z[torch.arange(len(index)), torch.tensor(index)] = 1.0
    return z.to(alpha.device).requires_grad_(), tuple(index)


def score(alpha: torch.Tensor, index: tuple[int, ...]) -> torch.Tensor:
    """∇_α Σ_e log softmax(α_e)[k_e] = onehot(k) - softmax(α), per row."""
    probs = torch.softmax(alpha.detach(), dim=-1)
    one_hot = torch.zeros_like(probs)
    one_hot[torch.arange(len(index)), torch.tensor(index)] = 1.0
    return one_hot - probs


class Dsnas(SingleLevel):
    """DSNAS on any space: a hard single-path child per step, α by the gate-sensitivity score estimator."""

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.early_fix = bool(cfg.option("early_fix_arch"))
        # Per kind, {edge: (op, α row when frozen)}; `fixed_epoch` keeps a resumed epoch from freezing twice.
        self.fixed: dict[str, dict[int, tuple[int, torch.Tensor]]] = {kind: {} for kind in self.kinds}
        self.fixed_epoch = -1
        self._eval_paths: dict[str, SampledPath] | None = None

    def set_epoch(self, epoch: int) -> float:
        if self.early_fix and epoch != self.fixed_epoch:
            self._fix_confident_edges()
            self.fixed_epoch = epoch
        return super().set_epoch(epoch)

    def _fix_confident_edges(self) -> None:
        with torch.no_grad():
            for kind, alpha in zip(self.kinds, self.alphas, strict=True):
                for edge, (_, row) in self.fixed[kind].items():
                    alpha[edge] = row.to(alpha.device)
                top = torch.softmax(alpha, dim=-1).topk(2, dim=-1)
                margin = (top.values[:, 0] - top.values[:, 1]).tolist()
                for edge, (gap, op) in enumerate(zip(margin, top.indices[:, 0].tolist(), strict=True)):
                    if gap >= EARLY_FIX_MARGIN and edge not in self.fixed[kind]:
                        self.fixed[kind][edge] = (op, alpha[edge].detach().cpu().clone())
        self.arch_changed()

    def sample(self) -> dict[str, SampledPath]:
        """One hard child per kind, shared by the kind's cells; Z is the path's `hard` leaf."""
        paths = {}
        for kind, alpha in zip(self.kinds, self.alphas, strict=True):
            fixed = {edge: op for edge, (op, _) in self.fixed[kind].items()}
            z, index = one_hot_sample(alpha, self.sampler, fixed)
            paths[kind] = SampledPath(z, index, scalar_sum=False)
        return paths

    def backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        paths = self.sample()
        loss, logits = self.loss(x, y, paths)
        loss.backward()
        for kind, alpha in zip(self.kinds, self.alphas, strict=True):
            path = paths[kind]
            grad_z = path.hard.grad
            reward = torch.zeros(len(path.index), dtype=alpha.dtype, device=alpha.device) if grad_z is None else (
                grad_z.sum(dim=-1)
            )
            alpha.grad = reward.unsqueeze(-1) * score(alpha, path.index)
        return loss, logits

    def forward_weights(self, training: bool = True) -> dict[str, Any]:
        """Training: a fresh child per kind; evaluation: the argmax child, cached until α next changes (so an
        evaluation replayed as a CUDA graph reads no α from the device while capturing)."""
        if training:
            return self.sample()
        if self._eval_paths is None:
            self._eval_paths = {kind: argmax_path(a) for kind, a in zip(self.kinds, self.alphas, strict=True)}
        return self._eval_paths

    def arch_changed(self) -> None:
        self._eval_paths = None

    def end_epoch(self, epochs_done: int, iim_batches: Any) -> dict[str, Any]:
        fixed = self.space.record({kind: sorted(rows) for kind, rows in self.fixed.items()}) if self.early_fix else None
        return {**super().end_epoch(epochs_done, iim_batches), "fixed_edges": fixed}

    def state_dict(self) -> dict[str, Any]:
        fixed = {kind: {edge: (op, row.clone()) for edge, (op, row) in rows.items()}
                 for kind, rows in self.fixed.items()}
        return {**super().state_dict(), "fixed": fixed, "fixed_epoch": self.fixed_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.fixed = {kind: {int(e): (int(op), row.clone()) for e, (op, row) in rows.items()}
                      for kind, rows in state["fixed"].items()}
        self.fixed_epoch = int(state["fixed_epoch"])
