"""PC-DARTS (Xu et al., ICLR 2020; FAMILY.md "PC-DARTS"): DARTS with partial channels and edge normalisation.

Each edge runs its candidate ops on only the first C/K channels of its input, a fixed slice; the other
channels bypass the ops (max-pooled on stride-2 edges) and the two parts are channel-shuffled back together
(`isdarts.spaces.partial.PartialChannels`; the supernet is built with its ops at C/K channels through the
`supernet_options` hook). With edge normalisation each cell kind also has β, one logit per edge: a node sums
its incoming edges weighted by the softmax of β over them. α and β (each 1e-3·N(0,1), β drawn after α from
the same generator) share one Adam, first-order; neither moves (no step, Adam state untouched) during the
first `arch_warmup_epochs` epochs, which train the weights only. The α step comes first in each step, as in
the official code (`step_order`).

The genotype reads W[e, o] = softmax(α)[e, o]·b[e], with b the normalised β (1 without edge
normalisation), through the space's DARTS derivation: on the DARTS space per node the top 2 input edges
by max_{o≠none} W and on each its argmax non-`none` op (b only ranks edges); on NB201 the argmax over all 5
ops per edge, `none` included, which a positive per-edge factor never changes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.search.base import cosine_lr, set_lr
from isdarts.search.darts import Darts
from isdarts.spaces.partial import PartialChannels, normalise_edges
from isdarts.spaces.space import Genotype, Space


class PcDarts(Darts):
    """PC-DARTS on any space: partial-channel edges, edge normalisation β, α/β frozen for a warm-up."""

    first_order_only = True

    # [PC] keeps α and β out of model.parameters(), so its weight-step clip never counts them; [DR]'s NB201
    # code clips the network weights only as well.
    clip_alpha = False

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.k = int(cfg.option("k"))
        built = getattr(model, "partial_channels", 1)
        if built != self.k:
            raise ValueError(f"PC-DARTS with k={self.k} needs a supernet built with partial_channels={self.k}, "
                             f"got {built}")
        self.edge_norm = bool(cfg.option("edge_norm"))
        self.warmup_epochs = int(cfg.option("arch_warmup_epochs"))
        self.shift = cfg.option("shuffle_mode") == "shift"
        self.lr_epoch_offset = int(cfg.option("lr_epoch_offset"))
        if self.lr_epoch_offset not in (0, 1):
            raise ValueError(f"PC-DARTS lr_epoch_offset must be 0 or 1, got {self.lr_epoch_offset}")
        self.epoch = 0
        # β per kind, drawn after every α from the same generator; none without edge normalisation.
        ref = self.alphas[0]
        init_device = generator.device if generator is not None else torch.device("cpu")
        self.betas = [
            nn.Parameter(
                (1e-3 * torch.randn((space.num_edges,), generator=generator, device=init_device,
                                    dtype=ref.dtype)).to(ref.device)
            )
            for _ in self.kinds
        ] if self.edge_norm else []
        # One Adam over α and β (replacing the base's α-only one, which has taken no step).
        arch = cfg.arch
        self.a_optimizer = torch.optim.Adam(
            [*self.alphas, *self.betas], lr=arch.lr, betas=arch.betas, weight_decay=arch.weight_decay
        )

    @classmethod
    def supernet_options(cls, cfg: SearchConfig) -> dict[str, Any]:
        return {"partial_channels": int(cfg.option("k"))}

    @property
    def arch_frozen(self) -> bool:
        """True during the warm-up epochs, which train the weights only."""
        return self.epoch < self.warmup_epochs

    def arch_parameters(self) -> list[nn.Parameter]:
        return [*self.alphas, *self.betas]

    def arch_step_due(self) -> bool:
        return not self.arch_frozen

    # ------------------------------------------------------------------ mixing
    def edge_weights(self) -> dict[str, torch.Tensor] | None:
        """{kind: b}, per node the softmax of β over its incoming edges; None without edge normalisation."""
        if not self.edge_norm:
            return None
        return {kind: normalise_edges(beta, self.space.edges) for kind, beta in zip(self.kinds, self.betas,
                                                                                    strict=True)}

    def forward_weights(self, training: bool = True) -> dict[str, PartialChannels]:
        """Per kind the partial-channel strategy of softmax(α) and b; the same in training and evaluation."""
        b = self.edge_weights()
        return {
            kind: PartialChannels(w, self.k, None if b is None else b[kind], self.shift)
            for kind, w in self.arch_weights().items()
        }

    def genotype(self) -> Genotype:
        """The space's DARTS derivation of W = softmax(α)·b (see the module docstring).

        The derivation only compares weights (argmax, ranking), so it is given log W = log_softmax(α) + log b:
        the same cell, with no product underflowing to 0 (which would tie an edge's ops) for very unequal β.
        """
        with torch.no_grad():
            log_w = {kind: torch.log_softmax(a, dim=-1) for kind, a in zip(self.kinds, self.alphas, strict=True)}
            if self.edge_norm:
                for kind, beta in zip(self.kinds, self.betas, strict=True):
                    log_w[kind] = log_w[kind] + normalise_edges(beta, self.space.edges, log=True).unsqueeze(-1)
        return self.space.genotype_from_weights(log_w)

    # ------------------------------------------------------------------ loop surface
    def set_epoch(self, epoch: int) -> float:
        """Start 0-based `epoch`; with lr_epoch_offset 1 it trains at the cosine's value of epoch + 1 ([PC]
        steps its scheduler at the start of each epoch)."""
        self.epoch = epoch
        return set_lr(self.w_optimizer, cosine_lr(epoch + self.lr_epoch_offset, self.epochs, self.lr, self.lr_min))

    def end_epoch(self, epochs_done: int, iim_batches: Any) -> dict[str, Any]:
        beta = None if not self.edge_norm else self.space.record(
            {kind: b.detach().cpu().tolist() for kind, b in zip(self.kinds, self.betas, strict=True)}
        )
        return {**super().end_epoch(epochs_done, iim_batches), "beta": beta, "arch_frozen": self.arch_frozen}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.edge_norm:
            state["beta"] = self.space.record({k: b.detach().clone() for k, b in zip(self.kinds, self.betas,
                                                                                    strict=True)})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.edge_norm:
            saved = self.space.per_kind(state["beta"])
            with torch.no_grad():
                for kind, beta in zip(self.kinds, self.betas, strict=True):
                    beta.copy_(saved[kind])
        super().load_state_dict(state)
