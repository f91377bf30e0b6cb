"""Λ-DARTS (spec §5): DARTS whose weight step also aligns the cells' α-gradients.

Every search cell l mixes with its own clone A_l of p = softmax(α); g_l = dL/dA_l (flattened) are the
per-layer gradients. The regulariser R(g_1..g_L) rewards aligned g_l, and the weight objective becomes
L - λ_t R. Its weight gradient -∇_w R needs second derivatives; Λ-DARTS instead takes a central
difference of ∇_w L along the probabilities: with v_l = dR/dg_l and δ_l = ε v_l,
    (∇_w L(w; A - δ) - ∇_w L(w; A + δ)) / (2ε)  ≈  -∇_w Σ_l <v_l, g_l>  =  -∇_w R.
That is the official code's estimate (`regulariser_gradient: finite_difference`). ReLU kinks inside ±δ
break it on a real supernet (measured at initialisation on NB201, C=16, N=5: cosine about 0 with the exact
gradient); `regulariser_gradient: exact` takes -∇_w R itself by double backward through the g_l instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.search.base import Batches
from isdarts.search.darts import Darts, flat_norm, grads_or_zeros
from isdarts.search.speed import full_precision
from isdarts.spaces.space import Space

RegulariserGrad = Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]


def _stack(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    if len(grads) < 2:
        raise ValueError(f"layer alignment needs at least 2 per-layer gradients, got {len(grads)}")
    return torch.stack([g.reshape(-1) for g in grads])


def _num_pairs(n: int) -> int:
    return n * (n - 1) // 2


def _safe_inverse(x: torch.Tensor) -> torch.Tensor:
    """1/x where x > 0, else 0: a zero gradient has no direction and so takes no part in the alignment."""
    return torch.where(x > 0, 1.0 / x, torch.zeros_like(x))


def _upper_mean(matrix: torch.Tensor) -> torch.Tensor:
    i, j = torch.triu_indices(matrix.shape[0], matrix.shape[1], offset=1, device=matrix.device)
    return matrix[i, j].mean()


def layer_alignment(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Λ: the mean over pairs i < j of cos(g_i, g_j); also the `corr` regulariser's value."""
    g = _stack(grads)
    u = g * _safe_inverse(g.norm(dim=1, keepdim=True))
    return _upper_mean(u @ u.T)


def sign_alignment(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """The `signcorr` value: mean over pairs i < j of <g_i, g_j> / <|g_i|, |g_j|>."""
    g = _stack(grads)
    a = g.abs()
    return _upper_mean((g @ g.T) * _safe_inverse(a @ a.T))


def _unstack(v: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [row.reshape(t.shape) for row, t in zip(v, like, strict=True)]


def corr_regulariser_grad(grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """v_l = dR_corr/dg_l = (1/P) (1/|g_l|) (I - û_l û_lᵀ) Σ_j û_j, in the shapes of `grads`.

    The j = l term drops out because (I - û_l û_lᵀ) û_l = 0, so Σ_j may run over all layers.
    """
    g = _stack(grads)
    inv_norm = _safe_inverse(g.norm(dim=1, keepdim=True))
    u = g * inv_norm
    s = u.sum(dim=0, keepdim=True)
    v = (s - u * (u * s).sum(dim=1, keepdim=True)) * inv_norm / _num_pairs(len(grads))
    return _unstack(v, grads)


def signcorr_regulariser_grad(grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """v_l = (1/P) Σ_{j≠l} [1 - (<g_l, g_j>/D_lj) sign(g_l) ⊙ sign(g_j)] ⊙ g_j / D_lj, D_lj = <|g_l|, |g_j|>.

    As matrices: sign(g_j) ⊙ g_j = |g_j|, so v = (C1 g - sign(g) ⊙ (C2 |g|)) / P with C1 = 1/D and
    C2 = N/D² (N = g gᵀ), both with a zero diagonal.
    """
    g = _stack(grads)
    a = g.abs()
    off_diagonal = 1.0 - torch.eye(len(grads), dtype=g.dtype, device=g.device)
    inv_d = _safe_inverse(a @ a.T) * off_diagonal
    c2 = (g @ g.T) * inv_d.square()
    v = (inv_d @ g - g.sign() * (c2 @ a)) / _num_pairs(len(grads))
    return _unstack(v, grads)


REGULARISERS: dict[str, RegulariserGrad] = {"corr": corr_regulariser_grad, "signcorr": signcorr_regulariser_grad}
# The regulariser's value R(g_1..g_L), which the exact gradient differentiates.
REGULARISER_VALUES: dict[str, Callable[[Sequence[torch.Tensor]], torch.Tensor]] = {
    "corr": layer_alignment, "signcorr": sign_alignment,
}
GRADIENTS = ("finite_difference", "exact")


def lambda_at(epoch: int, epochs: int, lam: float) -> float:
    """λ_t = λ t / (T - 1): 0 in the first epoch, λ in the last (t is the 0-based epoch)."""
    return lam if epochs <= 1 else lam * epoch / (epochs - 1)


class LambdaDarts(Darts):
    """Λ-DARTS on any space: the cells of the space's first kind are regularised (all 15 NB201 cells; the
    DARTS space's normal cells, as Λ-DARTS does), each mixing with its own clone of that kind's weights; the
    other kinds keep the shared weights and are never perturbed (their v is 0).

    `epsilon` is ε0 (the probabilities move by ε0 per side) and `lam` the final λ of the linear ramp;
    `step_order` is the official script's per space. The α update is the unchanged DARTS update.
    """

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        regulariser, lam, eps0 = cfg.option("regulariser"), cfg.option("lam"), cfg.option("epsilon")
        if regulariser not in REGULARISERS:
            raise ValueError(f"unknown Λ-DARTS regulariser {regulariser!r}; known: {', '.join(REGULARISERS)}")
        if eps0 <= 0:
            raise ValueError(f"ε0 (eps0, epsilon) must be > 0, got {eps0!r}")
        gradient = cfg.options.get("regulariser_gradient", "finite_difference")
        if gradient not in GRADIENTS:
            raise ValueError(f"unknown regulariser_gradient {gradient!r}; expected one of {', '.join(GRADIENTS)}")
        self.regulariser, self.lam, self.eps0, self.exact = regulariser, lam, eps0, gradient == "exact"
        self.lam_t = lambda_at(0, self.epochs, lam)
        self.regularised_kind = space.kinds[0]
        self.add_running("alignment")

    def set_epoch(self, epoch: int) -> float:
        self.lam_t = lambda_at(epoch, self.epochs, self.lam)
        return super().set_epoch(epoch)

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        """Adds λ_t and the epoch's mean train-batch layer alignment Λ (regularised cells) to the DARTS record."""
        steps, alignment = self.running_counts["alignment"], self.running["alignment"].clone()
        record = super().end_epoch(epochs_done, iim_batches)
        record["lambda"] = self.lam_t
        record["alignment"] = (alignment / steps).item() if steps else None
        return record

    def with_cell_weights(self, p: dict[str, torch.Tensor], cells: Sequence[torch.Tensor]) -> dict[str, Any]:
        """The supernet's `weights` argument: the regularised cells mix with `cells`, the others with `p`."""
        return {**p, self.regularised_kind: list(cells)}

    def weight_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.arch_weights()
        base = p[self.regularised_kind]
        # Non-leaf clones of p: α still gets its weight-loss gradient (AutoDL counts it in the clip norm).
        clones = [base.clone() for _ in range(self.model.num_cells(self.regularised_kind))]
        for clone in clones:
            clone.retain_grad()
        loss, logits = self.loss(x, y, self.with_cell_weights(p, clones))
        if self.exact and self.lam_t != 0:
            return self._exact_weight_backward(loss, logits, clones)
        loss.backward()
        cell_grads = [clone.grad for clone in clones]
        self.accumulate("alignment", layer_alignment(cell_grads))
        if self.lam_t != 0:
            for w, c in zip(self.weights, self.alignment_correction(x, y, cell_grads), strict=True):
                # A weight the loss never reached (a masked op) has no correction either; leave it gradient-free.
                if w.grad is not None:
                    w.grad.add_(c, alpha=self.lam_t)
        return loss, logits

    def alignment_correction(
        self, x: torch.Tensor, y: torch.Tensor, cell_grads: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """(g⁺ - g⁻) / (2ε) per weight tensor, ≈ -∇_w R: g⁺ at A - δ, g⁻ at A + δ, on the same batch.

        ε = ε0 / |concat v| is renormalised every call, so the probabilities move by exactly ε0. Both passes
        run in float32 whatever `amp` says: a difference of two bf16 gradients is rounding noise.
        """
        v = REGULARISERS[self.regulariser](cell_grads)
        eps = self.eps0 / flat_norm(v).clamp_min(torch.finfo(v[0].dtype).tiny)
        with torch.no_grad():
            p = self.arch_weights()
        base = p[self.regularised_kind]
        with full_precision(self.model):
            g_plus, g_minus = (
                grads_or_zeros(
                    self.loss(x, y, self.with_cell_weights(p, [base + sign * eps * v_l for v_l in v]))[0], self.weights
                )
                for sign in (-1.0, 1.0)
            )
        return [(gp - gm) / (2 * eps) for gp, gm in zip(g_plus, g_minus, strict=True)]

    def _exact_weight_backward(
        self, loss: torch.Tensor, logits: torch.Tensor, clones: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """∇_w (L - λ_t R) with R's weight gradient by double backward; α keeps L's gradient alone, as the
        finite-difference variant leaves it (it enters the clip norm where the space's code clips α)."""
        cell_grads = torch.autograd.grad(loss, clones, create_graph=True)
        value = REGULARISER_VALUES[self.regulariser](cell_grads)
        self.accumulate("alignment", layer_alignment([g.detach() for g in cell_grads]))
        grad_r = torch.autograd.grad(value, self.weights, retain_graph=True, allow_unused=True)
        loss.backward()
        for w, g in zip(self.weights, grad_r, strict=True):
            # A weight the loss never reached (a masked op) stays gradient-free.
            if w.grad is not None and g is not None:
                w.grad.sub_(g, alpha=self.lam_t)
        return loss, logits
