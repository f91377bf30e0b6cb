"""Plain DARTS (spec §4) on any space: architecture logits α trained bi-level against the weights.

The weights train on a train batch and α on a paired valid batch, so `train_step` takes both halves
of the 25k/25k split: `train_step(x_train, y_train, x_valid, y_valid)`. The caller pairs every train
batch with a valid batch (AutoDL draws the valid image at random, with replacement).

First order (DARTS-V1): weight step, then α step on the valid batch at the new weights.
Second order (DARTS-V2): α step first, through one unrolled weight step
    w' = w - xi (mu * momentum_buf + grad_w L_tr + wd * w),   xi = current weight lr,
    grad_alpha = d/dalpha L_val(w', alpha) - xi * H v,   v = grad_w' L_val(w', alpha),
with H v = grad^2_{alpha,w} L_tr v by a central difference at w +- R v, R = 0.01 / |v|; then the weight step.

`Darts` holds that machinery for every space: one α tensor of (edges, ops) per cell kind of the space (one
(6, 5) on NB201, a normal and a reduction (14, 8) on the DARTS space), drawn in kind order from one
generator. Other bi-level methods subclass it and change one hook: `relax` (how α becomes mixing weights),
`arch_penalty` (an extra term of the α loss), `weight_backward` (the weight step's gradient). α stays
outside `model.parameters()`, as in the original DARTS and Λ-DARTS code; whether the weight step's clip
counts α is the space's reference code's choice (`Space.clip_alpha_with_weights`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from isdarts.config.search import SearchConfig
from isdarts.search.base import Batches, cosine_lr, set_lr
from isdarts.search.speed import full_precision
from isdarts.spaces.space import Genotype, Space


def grads_or_zeros(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d inputs, with zeros (not None) for inputs the loss does not reach (e.g. masked ops)."""
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads, strict=True)]


def masked_softmax(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of each row over its alive (mask 1) entries; masked entries get exactly zero weight.

    A row with nothing alive (node-wise shrinking can mask a whole edge) would give NaN weights and, through the
    softmax backward, NaN gradients: it takes its plain softmax times the all-zero mask row instead.
    """
    masked = mask == 0
    dead = masked.all(dim=-1, keepdim=True)
    weights = torch.softmax(alpha.masked_fill(masked & ~dead, float("-inf")), dim=-1)
    return weights * mask.to(weights.dtype)


def exclude_ops(model: nn.Module, space: Space, names: Sequence[str]) -> None:
    """Mask ops `names` out of every kind's supernet for the whole search (never run, never derived): how a
    method whose reference code has no such op (FairDARTS and SDARTS on the DARTS space: no `none`) runs on a
    space that has it. A space without them (RobustDARTS's S1, S2, S4, S5 have no `none`) is left as it is."""
    for kind in space.kinds:
        mask = model.get_mask(kind).clone()
        for e, ops in enumerate(space.op_table(kind)):
            for o, name in enumerate(ops):
                if name in names:
                    mask[e, o] = 0
        model.set_mask(kind, mask)


def flat_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all tensors concatenated, as a device scalar (no host sync)."""
    return torch.cat([t.reshape(-1) for t in tensors]).norm()


class Darts:
    """The DARTS bi-level loop for any space: weight step, α step (first or second order), state.

    α lives here, not in the supernet: `model.parameters()` are exactly the weights the SGD step trains.
    """

    # The search loop feeds bi-level methods (x_train, y_train, x_valid, y_valid); IS-DARTS has no valid half.
    bilevel = True
    # Whether the weight step's clip counts α's gradient; None: the space's reference code's choice.
    clip_alpha: bool | None = None
    # Methods whose reference code has no unrolled (second-order) α step refuse `order: 2`.
    first_order_only = False

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        order = cfg.order
        # AutoDL's order unless the method says otherwise: weight step first at order 1, α step first at 2.
        step_order = cfg.options.get("step_order", "alpha_first" if order == 2 else "weight_first")
        self.arch_first = step_order == "alpha_first"
        if self.first_order_only and order != 1:
            raise ValueError(f"{type(self).__name__} takes first-order α steps and has no second-order variant; "
                             "set order: 1")
        if not self.arch_first and order == 2:
            # The unrolled step reads the momentum buffer and weights that the α step is taken at.
            raise ValueError("second-order DARTS takes the α step first; step_order weight_first is not supported")
        self.model, self.space, self.cfg = model, space, cfg
        self.epochs, self.order = cfg.epochs, order
        self.lr, self.lr_min, self.grad_clip = cfg.lr, cfg.lr_min, cfg.grad_clip
        self.kinds = space.kinds
        self.schedule: list[int] = []  # shrink epochs: plain DARTS never shrinks (S-DARTS does)
        self.weights = list(model.parameters())
        ref = self.weights[0]
        init_device = generator.device if generator is not None else torch.device("cpu")
        # Drawn in kind order from one generator, so a seed fixes every α tensor.
        self.alphas = [
            nn.Parameter(
                (1e-3 * torch.randn((space.num_edges, space.num_ops), generator=generator, device=init_device,
                                    dtype=ref.dtype)).to(ref.device)
            )
            for _ in self.kinds
        ]
        self.w_optimizer = torch.optim.SGD(
            self.weights, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
        arch = cfg.arch
        self.a_optimizer = torch.optim.Adam(self.alphas, lr=arch.lr, betas=arch.betas, weight_decay=arch.weight_decay)
        self.criterion = nn.CrossEntropyLoss()
        # Running sums (and their counts) over the current epoch: saved with in-epoch checkpoints, so a resume
        # inside an epoch keeps them, and cleared when the epoch's means are read.
        self.running: dict[str, torch.Tensor] = {}
        self.running_counts: dict[str, int] = {}
        self.add_running("arch_loss")

    @property
    def alpha(self) -> dict[str, nn.Parameter]:
        """{kind: (edges, ops) architecture logits}."""
        return dict(zip(self.kinds, self.alphas, strict=True))

    # ------------------------------------------------------------------ hooks
    @classmethod
    def supernet_options(cls, cfg: SearchConfig) -> dict[str, Any]:
        """Extra keyword arguments of `Space.build_supernet` this method needs (PC-DARTS: partial_channels)."""
        return {}

    def relax(self, kind: str, alpha: torch.Tensor) -> torch.Tensor:
        """The mixing weights of one kind's α: a softmax over all ops of each edge."""
        return torch.softmax(alpha, dim=-1)

    def forward_weights(self, training: bool = True) -> Any:
        """What a forward mixes by: the relaxed α (default), or a strategy of isdarts.spaces.mixing (a
        sampled path, ...); `training` False for evaluation."""
        return self.arch_weights()

    def arch_parameters(self) -> list[nn.Parameter]:
        """The parameters the α step's Adam trains: α (methods add theirs, e.g. PC-DARTS's β)."""
        return self.alphas

    def arch_step_due(self) -> bool:
        """Whether this training step takes an α step (PC-DARTS freezes α for its warm-up epochs)."""
        return True

    def arch_penalty(self) -> torch.Tensor | None:
        """An extra term added to the α step's loss (regularised methods); None: plain DARTS."""
        return None

    def weight_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill the weights' .grad for the weight step; returns (loss, logits)."""
        loss, logits = self.loss(x, y)
        loss.backward()
        return loss, logits

    # ------------------------------------------------------------------ encoding
    def arch_weights(self) -> dict[str, torch.Tensor]:
        """The supernet's `weights` argument for the current α: {kind: (edges, ops) mixing weights}."""
        return {kind: self.relax(kind, a) for kind, a in zip(self.kinds, self.alphas, strict=True)}

    def genotype(self) -> Genotype:
        """The space's DARTS derivation of the current mixing weights (NB201: argmax per edge, `none`
        included, spec §4; DARTS space: the top-2 non-`none` inputs per node, spec §5)."""
        return self.space.genotype_from_weights(self.arch_weights())

    def loss(self, x: torch.Tensor, y: torch.Tensor, weights: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(CE loss, logits) of the supernet mixed by `weights` (default: the current arch weights)."""
        _, logits = self.model(x, weights=self.forward_weights() if weights is None else weights)
        return self.criterion(logits, y), logits

    def per_kind(self, fn: Callable[[torch.Tensor], Any]) -> Any:
        """fn(α) of every kind, in the shape the history and checkpoints use (NB201: one plain table)."""
        return self.space.record({kind: fn(a) for kind, a in zip(self.kinds, self.alphas, strict=True)})

    # ------------------------------------------------------------------ loop surface
    def set_epoch(self, epoch: int) -> float:
        return set_lr(self.w_optimizer, cosine_lr(epoch, self.epochs, self.lr, self.lr_min))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The supernet's logits mixed by the current α, as evaluation mixes them."""
        return self.model(x, weights=self.forward_weights(training=False))[1]

    def train_step(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One weight step on the train batch and one α step on the valid batch, in the configured order.

        Returns the weight step's detached loss and number of correct predictions (device tensors).
        """
        self.model.train()
        arch_step = self.arch_step_due()
        if self.arch_first and arch_step:
            self._arch_step(x_train, y_train, x_valid, y_valid)
        result = self._weight_step(x_train, y_train)
        if not self.arch_first and arch_step:
            self._arch_step(x_train, y_train, x_valid, y_valid)
        return result

    def add_running(self, name: str) -> None:
        """Declare a per-epoch running statistic (a device scalar: no host sync per step)."""
        self.running[name] = torch.zeros((), dtype=torch.float64, device=self.alphas[0].device)
        self.running_counts[name] = 0

    def accumulate(self, name: str, value: torch.Tensor) -> None:
        self.running[name] += value.detach().double()
        self.running_counts[name] += 1

    def running_means(self) -> dict[str, float | None]:
        """The epoch's mean of every running statistic, which also clears them for the next epoch."""
        means = {
            name: (total / self.running_counts[name]).item() if self.running_counts[name] else None
            for name, total in self.running.items()
        }
        for name, total in self.running.items():
            total.zero_()
            self.running_counts[name] = 0
        return means

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        """DARTS has no end-of-epoch work; the record carries α and the mean α-step loss for the history."""
        return {
            "iim": None,
            "shrink_step": None,
            "pruned": self.space.record({kind: [] for kind in self.kinds}),
            "alpha": self.per_kind(lambda a: a.detach().cpu().tolist()),
            "arch_loss": self.running_means()["arch_loss"],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "alpha": self.per_kind(lambda a: a.detach().clone()),
            "w_optimizer": self.w_optimizer.state_dict(),
            "a_optimizer": self.a_optimizer.state_dict(),
            "running": {name: total.clone() for name, total in self.running.items()},
            "running_counts": dict(self.running_counts),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        saved = self.space.per_kind(state["alpha"])
        with torch.no_grad():
            for kind, alpha in zip(self.kinds, self.alphas, strict=True):
                alpha.copy_(saved[kind])
            for name, total in state["running"].items():
                self.running[name].copy_(total)
        self.running_counts.update(state["running_counts"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.a_optimizer.load_state_dict(state["a_optimizer"])

    # ------------------------------------------------------------------ weight step
    def _weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.w_optimizer.zero_grad(set_to_none=True)
        for param in self.arch_parameters():
            param.grad = None
        loss, logits = self.weight_backward(x, y)
        if self.grad_clip > 0:
            clip_alpha = self.space.clip_alpha_with_weights if self.clip_alpha is None else self.clip_alpha
            clipped = [*self.weights, *self.alphas] if clip_alpha else self.weights
            nn.utils.clip_grad_norm_(clipped, self.grad_clip)
        self.w_optimizer.step()
        return loss.detach(), (logits.detach().argmax(1) == y).sum()

    # ------------------------------------------------------------------ α step
    def _arch_step(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> None:
        grads = self.arch_grads(x_train, y_train, x_valid, y_valid)
        params = self.arch_parameters()
        self.a_optimizer.zero_grad(set_to_none=True)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        self.a_optimizer.step()
        for param in params:
            param.grad = None

    def arch_grads(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> list[torch.Tensor]:
        """The gradients the Adam step uses, one per `arch_parameters()` tensor: plain (order 1) or, for α alone,
        through the unrolled weights (order 2)."""
        if self.order == 1:
            loss, _ = self.loss(x_valid, y_valid)
            self.accumulate("arch_loss", loss)
            penalty = self.arch_penalty()
            return grads_or_zeros(loss if penalty is None else loss + penalty, self.arch_parameters())
        return self._unrolled_arch_grads(x_train, y_train, x_valid, y_valid)

    def _unrolled_arch_grads(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> list[torch.Tensor]:
        group = self.w_optimizer.param_groups[0]
        xi, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        loss_train, _ = self.loss(x_train, y_train)
        grads = grads_or_zeros(loss_train, self.weights)
        unrolled = []
        with torch.no_grad():
            for p, g in zip(self.weights, grads, strict=True):
                step = g + wd * p
                buf = self.w_optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None and mu:
                    step = step + mu * buf
                unrolled.append((p - xi * step).requires_grad_())
        # Evaluate L_val at w' functionally, so the model's own weights are never touched; copies of the
        # buffers keep this pass out of the BN running statistics, as AutoDL's throw-away deepcopy does.
        state = {name: b.clone() for name, b in self.model.named_buffers()}
        state.update(zip((name for name, _ in self.model.named_parameters()), unrolled, strict=True))
        _, logits = functional_call(self.model, state, (x_valid,), {"weights": self.forward_weights()})
        loss_valid = self.criterion(logits, y_valid)
        self.accumulate("arch_loss", loss_valid)
        penalty = self.arch_penalty()
        d_all = grads_or_zeros(loss_valid if penalty is None else loss_valid + penalty, [*self.alphas, *unrolled])
        d_alpha, v = d_all[: len(self.alphas)], d_all[len(self.alphas) :]
        hv = self._alpha_hessian_vector(x_train, y_train, v)
        return [d - xi * h for d, h in zip(d_alpha, hv, strict=True)]

    def _alpha_hessian_vector(self, x: torch.Tensor, y: torch.Tensor, v: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """grad^2_{alpha,w} L_train(w, alpha) v by a central difference of grad_alpha L_train at w +- R v.

        Both passes run in float32 whatever `amp` says: a difference of two bf16 gradients is rounding noise.
        """
        # The tiny floor only avoids 0/0 when v = 0; then both sides coincide and the product is 0.
        r = 0.01 / flat_norm(v).clamp_min(torch.finfo(v[0].dtype).tiny)
        saved = [p.detach().clone() for p in self.weights]
        try:
            grads = []
            with full_precision(self.model):
                for sign in (1.0, -1.0):
                    with torch.no_grad():
                        for p, p0, t in zip(self.weights, saved, v, strict=True):
                            p.copy_(p0 + sign * r * t)
                    loss, _ = self.loss(x, y)
                    grads.append(grads_or_zeros(loss, self.alphas))
        finally:
            # Restore from copies, not by subtracting again: the weights come back bit for bit.
            with torch.no_grad():
                for p, p0 in zip(self.weights, saved, strict=True):
                    p.copy_(p0)
        return [(gp - gm) / (2 * r) for gp, gm in zip(grads[0], grads[1], strict=True)]
