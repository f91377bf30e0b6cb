"""Plain DARTS (spec §4) on both spaces: architecture logits α trained bi-level against the weights.

The weights train on a train batch and α on a paired valid batch, so `train_step` takes both halves
of the 25k/25k split: `train_step(x_train, y_train, x_valid, y_valid)`. The caller pairs every train
batch with a valid batch (AutoDL draws the valid image at random, with replacement).

First order (DARTS-V1): weight step, then α step on the valid batch at the new weights.
Second order (DARTS-V2): α step first, through one unrolled weight step
    w' = w - xi (mu * momentum_buf + grad_w L_tr + wd * w),   xi = current weight lr,
    grad_alpha = d/dalpha L_val(w', alpha) - xi * H v,   v = grad_w' L_val(w', alpha),
with H v = grad^2_{alpha,w} L_tr v by a central difference at w +- R v, R = 0.01 / |v|; then the weight step.

`BilevelDarts` holds that machinery for any space; "α" is a list of parameters: one (6, 5) tensor on
NB201 (`DartsNb201`), a normal and a reduction (14, 8) tensor on the DARTS space (`DartsDartsSpace`).
A space class says how α becomes the supernet's `weights` argument (`arch_weights`) and a genotype.
On the DARTS space α stays outside `model.parameters()`, as in the original DARTS and Λ-DARTS code, so
the weight step's clip sees the weights only (AutoDL's NB201 code also counts α; see `clip_alpha`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from isdarts.config.search import SearchConfig
from isdarts.search.base import Batches, cosine_lr, set_lr
from isdarts.spaces.darts.genotype import DartsGenotype
from isdarts.spaces.darts.supernet import CELL_KINDS, NUM_EDGES, NUM_OPS, DartsSupernet, derive_darts_genotype
from isdarts.spaces.nb201.genotype import Nb201Genotype
from isdarts.spaces.nb201.supernet import NUM_EDGES as NB201_NUM_EDGES
from isdarts.spaces.nb201.supernet import NUM_OPS as NB201_NUM_OPS
from isdarts.spaces.nb201.supernet import Nb201Supernet, derive_nb201_genotype


def grads_or_zeros(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d inputs, with zeros (not None) for inputs the loss does not reach (e.g. masked ops)."""
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads, strict=True)]


def flat_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all tensors concatenated, as a device scalar (no host sync)."""
    return torch.cat([t.reshape(-1) for t in tensors]).norm()


class BilevelDarts:
    """The DARTS bi-level loop shared by the spaces: weight step, α step (first or second order), state.

    α lives here, not in the supernet: `model.parameters()` are exactly the weights the SGD step trains.
    Subclasses set `kinds` and implement `arch_weights` and `genotype`.
    """

    # The search loop feeds bi-level methods (x_train, y_train, x_valid, y_valid); IS-DARTS has no valid half.
    bilevel = True
    # None: one α tensor, recorded as a plain table. Else one α tensor per cell kind, recorded as {kind: table}.
    kinds: tuple[str, ...] | None = None
    # Whether the weight step's gradient clip counts α's weight-loss gradient (AutoDL clips network.parameters(),
    # α included; DARTS and Λ-DARTS keep α outside model.parameters(), so their clip sees the weights only).
    clip_alpha = True

    # The shape of each α tensor, one per entry of `kinds` (or a single one).
    alpha_shapes: tuple[tuple[int, ...], ...]
    # Whether the α step comes first; None: AutoDL's V1/V2 order (weight step first at order 1, α first at 2).
    arch_first: bool | None = None
    # Shrink epochs: plain DARTS never shrinks (S-DARTS does).
    schedule: list[int]

    def __init__(self, model: nn.Module, cfg: SearchConfig, generator: torch.Generator | None = None) -> None:
        order = cfg.order
        if self.arch_first is False and order == 2:
            # The unrolled step reads the momentum buffer and weights that the α step is taken at.
            raise ValueError("second-order DARTS takes the α step first; arch_first=False is not supported")
        self.model, self.epochs, self.order = model, cfg.epochs, order
        self.lr, self.lr_min, self.grad_clip = cfg.lr, cfg.lr_min, cfg.grad_clip
        if self.arch_first is None:
            self.arch_first = order == 2
        self.schedule = []
        self.weights = list(model.parameters())
        ref = self.weights[0]
        init_device = generator.device if generator is not None else torch.device("cpu")
        # Drawn in order from one generator, so a seed fixes every α tensor.
        self.alphas = [
            nn.Parameter(
                (1e-3 * torch.randn(shape, generator=generator, device=init_device, dtype=ref.dtype)).to(ref.device)
            )
            for shape in self.alpha_shapes
        ]
        self.w_optimizer = torch.optim.SGD(
            self.weights, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
        arch = cfg.arch
        self.a_optimizer = torch.optim.Adam(self.alphas, lr=arch.lr, betas=arch.betas, weight_decay=arch.weight_decay)
        self.criterion = nn.CrossEntropyLoss()
        self._arch_loss_sum = torch.zeros((), dtype=torch.float64, device=ref.device)
        self._arch_steps = 0

    # ------------------------------------------------------------------ encoding (per space)
    def arch_weights(self) -> Any:
        """The supernet's `weights` argument for the current α."""
        raise NotImplementedError

    def genotype(self) -> Any:
        raise NotImplementedError

    def loss(self, x: torch.Tensor, y: torch.Tensor, weights: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(CE loss, logits) of the supernet mixed by `weights` (default: the current arch weights)."""
        _, logits = self.model(x, weights=self.arch_weights() if weights is None else weights)
        return self.criterion(logits, y), logits

    def per_kind(self, fn: Callable[[torch.Tensor], Any]) -> Any:
        """fn(α) for a single α, else {kind: fn(α_kind)}: the shape the history and checkpoints use."""
        if self.kinds is None:
            return fn(self.alphas[0])
        return {kind: fn(a) for kind, a in zip(self.kinds, self.alphas, strict=True)}

    def empty_pruned(self) -> Any:
        return [] if self.kinds is None else {kind: [] for kind in self.kinds}

    # ------------------------------------------------------------------ loop surface
    def set_epoch(self, epoch: int) -> float:
        lr = set_lr(self.w_optimizer, cosine_lr(epoch, self.epochs, self.lr, self.lr_min))
        self._arch_loss_sum.zero_()
        self._arch_steps = 0
        return lr

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The supernet's logits mixed by the current α."""
        return self.model(x, weights=self.arch_weights())[1]

    def train_step(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One weight step on the train batch and one α step on the valid batch, in the configured order.

        Returns the weight step's detached loss and number of correct predictions (device tensors).
        """
        self.model.train()
        if self.arch_first:
            self._arch_step(x_train, y_train, x_valid, y_valid)
            return self._weight_step(x_train, y_train)
        result = self._weight_step(x_train, y_train)
        self._arch_step(x_train, y_train, x_valid, y_valid)
        return result

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        """DARTS has no end-of-epoch work; the record carries α and the mean α-step loss for the history."""
        mean = (self._arch_loss_sum / self._arch_steps).item() if self._arch_steps else None
        return {
            "iim": None,
            "shrink_step": None,
            "pruned": self.empty_pruned(),
            "alpha": self.per_kind(lambda a: a.detach().cpu().tolist()),
            "arch_loss": mean,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "alpha": self.per_kind(lambda a: a.detach().clone()),
            "w_optimizer": self.w_optimizer.state_dict(),
            "a_optimizer": self.a_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        saved = [state["alpha"]] if self.kinds is None else [state["alpha"][kind] for kind in self.kinds]
        with torch.no_grad():
            for alpha, value in zip(self.alphas, saved, strict=True):
                alpha.copy_(value)
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.a_optimizer.load_state_dict(state["a_optimizer"])

    # ------------------------------------------------------------------ weight step
    def _weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.w_optimizer.zero_grad(set_to_none=True)
        for alpha in self.alphas:
            alpha.grad = None
        loss, logits = self._weight_backward(x, y)
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_([*self.weights, *self.alphas] if self.clip_alpha else self.weights, self.grad_clip)
        self.w_optimizer.step()
        return loss.detach(), (logits.detach().argmax(1) == y).sum()

    def _weight_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill the weights' .grad for the weight step; subclasses add regularisers here."""
        loss, logits = self.loss(x, y)
        loss.backward()
        return loss, logits

    # ------------------------------------------------------------------ α step
    def _arch_step(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> None:
        grads = self.arch_grads(x_train, y_train, x_valid, y_valid)
        self.a_optimizer.zero_grad(set_to_none=True)
        for alpha, grad in zip(self.alphas, grads, strict=True):
            alpha.grad = grad
        self.a_optimizer.step()
        for alpha in self.alphas:
            alpha.grad = None

    def arch_grads(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> list[torch.Tensor]:
        """The α gradients the Adam step uses, one per α tensor: plain (order 1) or through the unrolled weights."""
        if self.order == 1:
            loss, _ = self.loss(x_valid, y_valid)
            self._log_arch_loss(loss)
            return grads_or_zeros(loss, self.alphas)
        return self._unrolled_arch_grads(x_train, y_train, x_valid, y_valid)

    def _log_arch_loss(self, loss: torch.Tensor) -> None:
        self._arch_loss_sum += loss.detach().double()
        self._arch_steps += 1

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
        _, logits = functional_call(self.model, state, (x_valid,), {"weights": self.arch_weights()})
        loss_valid = self.criterion(logits, y_valid)
        self._log_arch_loss(loss_valid)
        d_all = grads_or_zeros(loss_valid, [*self.alphas, *unrolled])
        d_alpha, v = d_all[: len(self.alphas)], d_all[len(self.alphas) :]
        hv = self._alpha_hessian_vector(x_train, y_train, v)
        return [d - xi * h for d, h in zip(d_alpha, hv, strict=True)]

    def _alpha_hessian_vector(self, x: torch.Tensor, y: torch.Tensor, v: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """grad^2_{alpha,w} L_train(w, alpha) v by a central difference of grad_alpha L_train at w +- R v."""
        # The tiny floor only avoids 0/0 when v = 0; then both sides coincide and the product is 0.
        r = 0.01 / flat_norm(v).clamp_min(torch.finfo(v[0].dtype).tiny)
        saved = [p.detach().clone() for p in self.weights]
        try:
            grads = []
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


class DartsNb201(BilevelDarts):
    """DARTS on NAS-Bench-201: one (6, 5) α shared by all cells, softmax-mixed over all ops of each edge."""

    model: Nb201Supernet
    alpha_shapes = ((NB201_NUM_EDGES, NB201_NUM_OPS),)

    @property
    def alpha(self) -> nn.Parameter:
        """The (6, 5) architecture logits."""
        return self.alphas[0]

    def arch_weights(self) -> torch.Tensor:
        """The (edges, ops) mixing weights the cells use: softmax over all ops of each edge."""
        return torch.softmax(self.alpha, dim=-1)

    def genotype(self) -> Nb201Genotype:
        """Per edge, the argmax of the mixing weights over all ops, `none` included (spec §4)."""
        return derive_nb201_genotype(self.arch_weights())


class DartsDartsSpace(BilevelDarts):
    """DARTS on the DARTS space: `alpha_normal` and `alpha_reduce`, each (14, 8) and shared by its kind's cells.

    `end_epoch` records {"alpha": {"normal", "reduce"}} and the mean α-step loss; `genotype()` is always
    the standard DARTS derivation.
    """

    model: DartsSupernet
    alpha_shapes = ((NUM_EDGES, NUM_OPS),) * len(CELL_KINDS)
    kinds = CELL_KINDS
    clip_alpha = False

    @property
    def alpha_normal(self) -> nn.Parameter:
        return self.alphas[0]

    @property
    def alpha_reduce(self) -> nn.Parameter:
        return self.alphas[1]

    def arch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(normal, reduce) mixing weights: softmax over all 8 ops of each edge."""
        normal, reduce = (torch.softmax(a, dim=-1) for a in self.alphas)
        return normal, reduce

    def genotype(self) -> DartsGenotype:
        """The standard DARTS derivation of the current mixing weights (spec §5)."""
        with torch.no_grad():
            return derive_darts_genotype(*self.arch_weights())
