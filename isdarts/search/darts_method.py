"""Plain DARTS on NAS-Bench-201 (spec §4): one α shared by all cells, bi-level, first or second order.

The weights train on a train batch and α on a paired valid batch, so `train_step` takes both halves
of the 25k/25k split: `train_step(x_train, y_train, x_valid, y_valid)`. The caller pairs every train
batch with a valid batch (AutoDL draws the valid image at random, with replacement).

First order (DARTS-V1): weight step, then α step on the valid batch at the new weights.
Second order (DARTS-V2): α step first, through one unrolled weight step
    w' = w - xi (mu * momentum_buf + grad_w L_tr + wd * w),   xi = current weight lr,
    grad_alpha = d/dalpha L_val(w', alpha) - xi * H v,   v = grad_w' L_val(w', alpha),
with H v = grad^2_{alpha,w} L_tr v by a central difference at w +- R v, R = 0.01 / |v|; then the weight step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from isdarts.search.isdarts_method import cosine_lr
from isdarts.spaces.nb201_genotype import Nb201Genotype
from isdarts.spaces.nb201_supernet import CellWeights, Nb201Supernet

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def grads_or_zeros(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d inputs, with zeros (not None) for inputs the loss does not reach (e.g. masked ops)."""
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads, strict=True)]


def flat_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all tensors concatenated, as a device scalar (no host sync)."""
    return torch.cat([t.reshape(-1) for t in tensors]).norm()


class DartsNb201:
    """DARTS search method with the same surface as IsDartsNb201, plus a valid batch per step.

    α lives here, not in the supernet: `model.parameters()` are exactly the weights the SGD step trains.
    """

    name = "darts"

    def __init__(
        self,
        model: Nb201Supernet,
        *,
        epochs: int,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 5e-4,
        grad_clip: float = 5.0,
        arch_lr: float = 3e-4,
        arch_betas: tuple[float, float] = (0.5, 0.999),
        arch_weight_decay: float = 1e-3,
        order: int = 1,
        arch_first: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if order not in (1, 2):
            raise ValueError(f"DARTS order must be 1 or 2, got {order!r}")
        if arch_first is False and order == 2:
            # The unrolled step reads the momentum buffer and weights that the α step is taken at.
            raise ValueError("second-order DARTS takes the α step first; arch_first=False is not supported")
        self.model, self.epochs, self.order = model, epochs, order
        self.lr, self.lr_min, self.grad_clip = lr, lr_min, grad_clip
        self.arch_first = order == 2 if arch_first is None else arch_first
        self.weights = list(model.parameters())
        ref = self.weights[0]
        init_device = generator.device if generator is not None else torch.device("cpu")
        init = 1e-3 * torch.randn(tuple(model.mask.shape), generator=generator, device=init_device, dtype=ref.dtype)
        self.alpha = nn.Parameter(init.to(ref.device))
        self.w_optimizer = torch.optim.SGD(
            self.weights, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
        self.a_optimizer = torch.optim.Adam([self.alpha], lr=arch_lr, betas=arch_betas, weight_decay=arch_weight_decay)
        self.criterion = nn.CrossEntropyLoss()
        self._arch_loss_sum = torch.zeros((), dtype=torch.float64, device=ref.device)
        self._arch_steps = 0

    # ------------------------------------------------------------------ encoding
    def arch_weights(self) -> torch.Tensor:
        """The (edges, ops) mixing weights the cells use: softmax over all ops of each edge."""
        return torch.softmax(self.alpha, dim=-1)

    def loss(self, x: torch.Tensor, y: torch.Tensor, weights: CellWeights = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(CE loss, logits) of the supernet mixed by `weights` (default: the current arch weights)."""
        _, logits = self.model(x, weights=self.arch_weights() if weights is None else weights)
        return self.criterion(logits, y), logits

    # ------------------------------------------------------------------ loop surface
    def set_epoch(self, epoch: int) -> float:
        lr = cosine_lr(epoch, self.epochs, self.lr, self.lr_min)
        for group in self.w_optimizer.param_groups:
            group["lr"] = lr
        self._arch_loss_sum.zero_()
        self._arch_steps = 0
        return lr

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

    def needs_iim(self, epochs_done: int) -> bool:
        return False

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches]) -> dict[str, Any]:
        """DARTS has no end-of-epoch work; the record carries α and the mean α-step loss for the history."""
        mean = (self._arch_loss_sum / self._arch_steps).item() if self._arch_steps else None
        return {
            "iim": None,
            "shrink_step": None,
            "pruned": [],
            "alpha": self.alpha.detach().cpu().tolist(),
            "arch_loss": mean,
        }

    def genotype(self) -> Nb201Genotype:
        """Per edge, the argmax of the mixing weights over all ops, `none` included (spec §4)."""
        return Nb201Genotype.from_op_indices(self.arch_weights().argmax(dim=-1).tolist())

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "alpha": self.alpha.detach().clone(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "a_optimizer": self.a_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            self.alpha.copy_(state["alpha"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.a_optimizer.load_state_dict(state["a_optimizer"])

    # ------------------------------------------------------------------ weight step
    def _weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.w_optimizer.zero_grad(set_to_none=True)
        self.alpha.grad = None
        loss, logits = self._weight_backward(x, y)
        if self.grad_clip > 0:
            # AutoDL clips network.parameters(), which holds α too: its weight-loss gradient counts in the norm.
            nn.utils.clip_grad_norm_([*self.weights, self.alpha], self.grad_clip)
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
        grad = self.arch_grad(x_train, y_train, x_valid, y_valid)
        self.a_optimizer.zero_grad(set_to_none=True)
        self.alpha.grad = grad
        self.a_optimizer.step()
        self.alpha.grad = None

    def arch_grad(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> torch.Tensor:
        """The α gradient the Adam step uses: plain (order 1) or through the unrolled weights (order 2)."""
        if self.order == 1:
            loss, _ = self.loss(x_valid, y_valid)
            self._log_arch_loss(loss)
            return grads_or_zeros(loss, [self.alpha])[0]
        return self._unrolled_arch_grad(x_train, y_train, x_valid, y_valid)

    def _log_arch_loss(self, loss: torch.Tensor) -> None:
        self._arch_loss_sum += loss.detach().double()
        self._arch_steps += 1

    def _unrolled_arch_grad(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> torch.Tensor:
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
        d_alpha, *v = grads_or_zeros(loss_valid, [self.alpha, *unrolled])
        return d_alpha - xi * self._alpha_hessian_vector(x_train, y_train, v)

    def _alpha_hessian_vector(self, x: torch.Tensor, y: torch.Tensor, v: Sequence[torch.Tensor]) -> torch.Tensor:
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
                grads.append(grads_or_zeros(loss, [self.alpha])[0])
        finally:
            # Restore from copies, not by subtracting again: the weights come back bit for bit.
            with torch.no_grad():
                for p, p0 in zip(self.weights, saved, strict=True):
                    p.copy_(p0)
        return (grads[0] - grads[1]) / (2 * r)
