"""GDAS (Dong & Yang, CVPR 2019; FAMILY.md "Sampling: GDAS"): one op per edge, sampled per forward.

Every forward draws, per cell kind, one op per edge by the Gumbel-max trick on α (one sample shared by all
cells of the kind, a new one for every forward call: the weight step and the α step see different
samples) and runs only that op (`isdarts.spaces.mixing.SampledPath`). α learns through a straight-through
relaxation: h = onehot(k) - stopgrad(p) + p with p = softmax((log_softmax(α) + g) / τ), so the forward is
exactly the sampled op while ∂h/∂α = ∂p/∂α. On NB201 the unselected entries of h are also added as scalars
(their value exactly 0, their gradient the element sum of the edge's output gradient), as AutoDL's NB201
cell does; the DARTS-space cell does not (`unselected_grad`). τ falls linearly from `tau_max` in the first
epoch to `tau_min` in the last. The sample's distribution is softmax(α) whatever τ is.

The weight step comes first, then the α step (AutoDL), and the weight step's clip counts α's gradient
(AutoDL clips every network parameter, α included, on both spaces). Evaluation runs the argmax path. The
cell is, per comparison group, the `keep` candidates with the largest softmax(α) among the ops a derived
cell may use: per NB201 edge the argmax over all 5 ops, `none` included; per DARTS-space node the top 2
(op, input) pairs pooled over its input edges, both possibly from one input (AutoDL's GDAS derivation,
unlike DARTS's distinct-edge rule).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.search.darts import Darts
from isdarts.spaces.mixing import SampledPath
from isdarts.spaces.space import Genotype, Space


def tau_at(epoch: int, epochs: int, tau_max: float, tau_min: float) -> float:
    """τ of 0-based `epoch`: tau_max in the first epoch, tau_min in the last, linear between."""
    if epochs <= 1:
        return tau_max
    return tau_max - (tau_max - tau_min) * epoch / (epochs - 1)


def gumbel_sample(
    alpha: torch.Tensor, tau: float, generator: torch.Generator, scalar_sum: bool
) -> SampledPath:
    """One straight-through sample of an (edges, ops) α; redrawn while the noise or p is not finite."""
    while True:
        noise = torch.empty(alpha.shape, dtype=alpha.dtype).exponential_(generator=generator)
        gumbel = (-noise.log()).to(alpha.device)
        probs = torch.softmax((torch.log_softmax(alpha, dim=-1) + gumbel) / tau, dim=-1)
        if bool(torch.isfinite(gumbel).all()) and bool(torch.isfinite(probs).all()):
            break
    index = probs.argmax(dim=-1)
    one_hot = torch.zeros_like(probs).scatter_(-1, index.unsqueeze(-1), 1.0)
    return SampledPath(one_hot - probs.detach() + probs, tuple(index.tolist()), scalar_sum)


def argmax_path(alpha: torch.Tensor) -> SampledPath:
    """The path of α's argmax on every edge, weight 1 and no gradient: what evaluation runs."""
    index = alpha.detach().argmax(dim=-1)
    one_hot = torch.zeros_like(alpha, requires_grad=False).scatter_(-1, index.unsqueeze(-1), 1.0)
    return SampledPath(one_hot, tuple(index.tolist()), False)


def top_candidates_genotype(space: Space, weights: dict[str, torch.Tensor]) -> Genotype:
    """Per comparison group, the `keep` candidates with the largest weight among the ops a derived cell may
    use (stable: ties go to the earlier candidate), as a genotype."""
    masks = {}
    for kind in space.kinds:
        rows = weights[kind].detach().cpu().double().tolist()
        mask = torch.zeros(space.num_edges, space.num_ops)
        for subset in space.subsets:
            allowed = [(e, o) for e, o in subset if space.op_name(kind, e, o) not in space.derive_excludes]
            for e, o in sorted(allowed, key=lambda c: -rows[c[0]][c[1]])[: space.keep]:
                mask[e, o] = 1.0
        masks[kind] = mask
    return space.genotype_from_masks(masks)


class Gdas(Darts):
    """GDAS on any space: Gumbel-max sampled single paths, straight-through α gradients, τ annealed."""

    clip_alpha = True  # AutoDL clips network.parameters(), α included, on both spaces

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.tau_max, self.tau_min = cfg.option("tau_max"), cfg.option("tau_min")
        if not 0 < self.tau_min <= self.tau_max:
            raise ValueError(f"GDAS needs 0 < tau_min <= tau_max, got {self.tau_min}, {self.tau_max}")
        self.scalar_sum = cfg.option("unselected_grad") == "scalar_sum"
        self.tau = self.tau_max
        # The Gumbel noise: its own stream, seeded from the α draw's generator and saved with checkpoints.
        seed = int(torch.randint(0, 2**62, (), generator=generator)) if generator is not None else 0
        self.sampler = torch.Generator().manual_seed(seed)

    def set_epoch(self, epoch: int) -> float:
        self.tau = tau_at(epoch, self.epochs, self.tau_max, self.tau_min)
        return super().set_epoch(epoch)

    def forward_weights(self, training: bool = True) -> dict[str, Any]:
        """A fresh sample per kind for each training forward; the argmax path for evaluation."""
        if not training:
            return {kind: argmax_path(a) for kind, a in zip(self.kinds, self.alphas, strict=True)}
        return {
            kind: gumbel_sample(a, self.tau, self.sampler, self.scalar_sum)
            for kind, a in zip(self.kinds, self.alphas, strict=True)
        }

    def genotype(self) -> Genotype:
        return top_candidates_genotype(self.space, self.arch_weights())

    def end_epoch(self, epochs_done: int, iim_batches: Any) -> dict[str, Any]:
        return {**super().end_epoch(epochs_done, iim_batches), "tau": self.tau}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "sampler": self.sampler.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.sampler.set_state(state["sampler"])
