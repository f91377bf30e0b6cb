"""Plain DARTS (spec §4): architecture logits α trained bi-level against the weights, first or second order.

The weights train on a train batch and α on a paired valid batch, so `train_step` takes both halves
of the 25k/25k split: `train_step(x_train, y_train, x_valid, y_valid)`. The caller pairs every train
batch with a valid batch (AutoDL draws the valid image at random, with replacement).

First order (DARTS-V1): weight step, then α step on the valid batch at the new weights.
Second order (DARTS-V2): α step first, through one unrolled weight step
    w' = w - xi (mu * momentum_buf + grad_w L_tr + wd * w),   xi = current weight lr,
    grad_alpha = d/dalpha L_val(w', alpha) - xi * H v,   v = grad_w' L_val(w', alpha),
with H v = grad^2_{alpha,w} L_tr v by a central difference at w +- R v, R = 0.01 / |v|; then the weight step.

`BilevelDarts` holds that machinery for any space; "α" is a list of parameters: one (6, 5) tensor on
NB201 (`DartsNb201`), a normal and a reduction (14, 8) tensor on the DARTS space
(`isdarts.search.darts_space_baselines.DartsDartsSpace`). A space class says how α becomes the supernet's
`weights` argument (`arch_weights`) and how α becomes a genotype.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from isdarts.search.isdarts_method import cosine_lr
from isdarts.spaces.nb201_genotype import Nb201Genotype
from isdarts.spaces.nb201_supernet import Nb201Supernet

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


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

    name = "darts"
    # The search loop feeds bi-level methods (x_train, y_train, x_valid, y_valid); IS-DARTS has no valid half.
    bilevel = True
    # None: one α tensor, recorded as a plain table. Else one α tensor per cell kind, recorded as {kind: table}.
    kinds: tuple[str, ...] | None = None
    # Whether the weight step's gradient clip counts α's weight-loss gradient (AutoDL clips network.parameters(),
    # α included; DARTS and Λ-DARTS keep α outside model.parameters(), so their clip sees the weights only).
    clip_alpha = True

    def __init__(
        self,
        model: nn.Module,
        alpha_shapes: Sequence[tuple[int, ...]],
        *,
        epochs: int,
        lr: float,
        lr_min: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
        grad_clip: float,
        arch_lr: float,
        arch_betas: tuple[float, float],
        arch_weight_decay: float,
        order: int,
        arch_first: bool | None,
        generator: torch.Generator | None,
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
        # Drawn in order from one generator, so a seed fixes every α tensor.
        self.alphas = [
            nn.Parameter(
                (1e-3 * torch.randn(shape, generator=generator, device=init_device, dtype=ref.dtype)).to(ref.device)
            )
            for shape in alpha_shapes
        ]
        self.w_optimizer = torch.optim.SGD(
            self.weights, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
        self.a_optimizer = torch.optim.Adam(self.alphas, lr=arch_lr, betas=arch_betas, weight_decay=arch_weight_decay)
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
    """DARTS on NAS-Bench-201: one (6, 5) α shared by all cells, with the same surface as IsDartsNb201
    plus a valid batch per step."""

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
        super().__init__(
            model,
            [tuple(model.mask.shape)],
            epochs=epochs,
            lr=lr,
            lr_min=lr_min,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            arch_lr=arch_lr,
            arch_betas=arch_betas,
            arch_weight_decay=arch_weight_decay,
            order=order,
            arch_first=arch_first,
            generator=generator,
        )

    @property
    def alpha(self) -> nn.Parameter:
        """The (6, 5) architecture logits."""
        return self.alphas[0]

    def arch_weights(self) -> torch.Tensor:
        """The (edges, ops) mixing weights the cells use: softmax over all ops of each edge."""
        return torch.softmax(self.alpha, dim=-1)

    def arch_grad(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> torch.Tensor:
        """The α gradient the Adam step uses: plain (order 1) or through the unrolled weights (order 2)."""
        return self.arch_grads(x_train, y_train, x_valid, y_valid)[0]

    def genotype(self) -> Nb201Genotype:
        """Per edge, the argmax of the mixing weights over all ops, `none` included (spec §4)."""
        return Nb201Genotype.from_op_indices(self.arch_weights().argmax(dim=-1).tolist())
