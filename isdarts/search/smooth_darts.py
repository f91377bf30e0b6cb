"""SDARTS-RS and SDARTS-ADV (Chen & Hsieh, ICML 2020; FAMILY.md "SDARTS-RS", "SDARTS-ADV"): DARTS whose
weights train against perturbed mixing weights, on any space.

Source: [SD] xiangning-chen/SmoothDARTS @ d3dbfed, `attacker/perturb.py` (Random_alpha, Linf_PGD_alpha),
`attacker/linf_sgd.py`, `sota/cnn/model_search.py` (softmax_arch_parameters, clip, restore_arch_parameters),
`sota/cnn/train_search.py` and `nasbench201/train_search.py` (the loop).

Each step takes a plain first-order DARTS α step on the valid batch (unperturbed softmax weights), then a
weight step on the train batch whose supernet mixes by perturbed probabilities A, used as they are (no
softmax): S = softmax(α) per cell kind (one table shared by the kind's cells), A = clip(S + δ).
- SDARTS-RS: δ ~ U(-ε, ε) per entry.
- SDARTS-ADV: δ from PGD on the same train batch: a random start as RS, then `pgd_steps` sign-gradient ascent
  steps of size `pgd_step_factor`·ε/`pgd_steps` on CE, each projected onto the ε-ball around S before the
  clip; A falls back to S when the attack ends with a lower CE than S had (`revert_if_no_gain`).
`clip` is [SD]'s row rule, not a simplex projection: clamp each row to [0, 1] (if that zeroes it, the row's
argmax before clamping becomes 1), then divide by the row sum. ε of 0-based epoch t out of E is
`eps_min` + (`eps_max` - `eps_min`)·t/E, set at the epoch start ([SD] divides by E, not E-1).

Where this implementation chooses:
- [SD] overwrites α in place with A for the weight step and restores the saved logits afterwards. Here α is
  never written: A is a separate table passed to the supernet, so α is bit-exactly what it was.
- With `clip_includes_alpha` (the [SD] NB201 code, whose clip runs over model.parameters(), α included, while
  α holds A) the weight step's gradient clip also counts ∂L/∂A; the DARTS-space code's clip does not.
- `include_none` false (the DARTS-space default: [SD]'s s5 space has 7 ops) masks `none` out of the supernet
  for the whole search; the softmax, the perturbation and the clip then run over the alive ops only, so a
  masked op keeps weight 0 and is never computed.
- The attack takes gradients with respect to A only (torch.autograd.grad), so it leaves no weight gradients
  behind ([SD] backpropagates into the weights and zeroes them afterwards: the same weight step).
- BN during the attack (`attack_bn_mode`, [SD]: eval). Our search cells' BNs keep no running statistics, so
  in eval mode they still normalise by the batch; only the stem, head (and NB201 residual) BNs switch to
  running statistics, which the attack then leaves unchanged. [SD]'s cells track running statistics, so its
  attack sees them everywhere. The epoch record's `attack_bn` says how many BNs use which.
- The uniform draws come from a generator of the method's own (seeded from α's, saved with checkpoints),
  drawn on the CPU per kind in kind order so a seed gives the same draws on every device. The revert test
  is a device-side select (no host sync per step).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.search.base import Batches, cosine_lr, set_lr
from isdarts.search.darts import Darts, exclude_ops, grads_or_zeros, masked_softmax
from isdarts.spaces.space import Space

log = logging.getLogger(__name__)

Tables = dict[str, torch.Tensor]  # {kind: (edges, ops) mixing weights}


def epsilon_at(epoch: int, epochs: int, eps_min: float, eps_max: float) -> float:
    """ε of 0-based `epoch`: eps_min + (eps_max - eps_min)·epoch/epochs ([SD] divides by E, not E-1)."""
    return eps_min + (eps_max - eps_min) * epoch / epochs


def clip_rows(table: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[SD]'s `clip` of each row over its alive (mask 1) entries; masked entries are 0 in the result.

    Clamp to [0, 1]; a row the clamp leaves all zero puts 1 on the entry that was its largest before; divide
    by the row sum. A row with nothing alive stays all zero.
    """
    alive = mask != 0
    top = table.masked_fill(~alive, float("-inf")).argmax(dim=-1, keepdim=True)
    clamped = table.clamp(0.0, 1.0) * alive
    one_hot = torch.zeros_like(table).scatter_(-1, top, 1.0) * alive
    sums = clamped.sum(dim=-1, keepdim=True)
    rows = torch.where(sums == 0, one_hot, clamped)
    total = rows.sum(dim=-1, keepdim=True)
    return rows / torch.where(total == 0, torch.ones_like(total), total)


def bn_statistics(model: nn.Module, mode: str) -> dict[str, Any]:
    """How the supernet's BNs normalise in attack mode `mode`: {mode, running_stats, batch_stats} (counts)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    running = sum(1 for m in bns if mode == "eval" and m.track_running_stats)
    return {"mode": mode, "running_stats": running, "batch_stats": len(bns) - running}


class SmoothDartsRs(Darts):
    """SDARTS-RS on any space: the weight step mixes by clip(softmax(α) + U(-ε, ε)); α is plain DARTS."""

    first_order_only = True

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.eps_min, self.eps_max = float(cfg.option("eps_min")), float(cfg.option("eps_max"))
        if self.eps_min > self.eps_max:
            raise ValueError(f"SDARTS needs eps_min <= eps_max, got {self.eps_min} > {self.eps_max}; swap them")
        self.lr_epoch_offset = int(cfg.option("lr_epoch_offset"))
        if self.lr_epoch_offset not in (0, 1):
            raise ValueError(f"SDARTS lr_epoch_offset must be 0 or 1, got {self.lr_epoch_offset}")
        self.clip_alpha = bool(cfg.option("clip_includes_alpha"))
        if not cfg.option("include_none"):
            exclude_ops(model, space, ["none"])
        self.epsilon = self.eps_min
        # The perturbation's own stream, seeded from the α draw's generator and saved with checkpoints.
        seed = int(torch.randint(0, 2**62, (), generator=generator)) if generator is not None else 0
        self.noise = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ mixing
    def relax(self, kind: str, alpha: torch.Tensor) -> torch.Tensor:
        """Softmax over the alive ops (all of them unless `none` is excluded)."""
        return masked_softmax(alpha, self.model.get_mask(kind))

    def masks(self) -> Tables:
        return {kind: self.model.get_mask(kind) for kind in self.kinds}

    def uniform_start(self, probs: Tables, epsilon: float) -> Tables:
        """clip(S + U(-ε, ε)): one draw per kind (shared by its cells), in kind order, on alive entries."""
        masks, out = self.masks(), {}
        for kind in self.kinds:
            s = probs[kind]
            draw = torch.rand(s.shape, generator=self.noise, dtype=s.dtype).to(s.device)
            delta = (2.0 * draw - 1.0) * epsilon
            out[kind] = clip_rows(s + delta * masks[kind], masks[kind])
        return out

    def perturb(self, probs: Tables, x: torch.Tensor, y: torch.Tensor) -> Tables:
        """The perturbed mixing weights A of the weight step, from S = `probs` (detached)."""
        return self.uniform_start(probs, self.epsilon)

    # ------------------------------------------------------------------ weight step
    def weight_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CE of the supernet mixed by A directly (no softmax); with `clip_includes_alpha` α.grad holds ∂L/∂A
        for the clip, as [SD]'s NB201 code has it while α holds A."""
        with torch.no_grad():
            probs = {kind: self.relax(kind, a) for kind, a in zip(self.kinds, self.alphas, strict=True)}
        perturbed = {kind: t.detach().requires_grad_(self.clip_alpha) for kind, t in self.perturb(probs, x, y).items()}
        loss, logits = self.loss(x, y, weights=perturbed)
        loss.backward()
        if self.clip_alpha:
            for kind, alpha in zip(self.kinds, self.alphas, strict=True):
                grad = perturbed[kind].grad
                alpha.grad = torch.zeros_like(alpha) if grad is None else grad
        return loss, logits

    def _weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        result = super()._weight_step(x, y)
        for alpha in self.alphas:  # ∂L/∂A only served the clip; the α step sets its own gradient
            alpha.grad = None
        return result

    # ------------------------------------------------------------------ loop surface
    def set_epoch(self, epoch: int) -> float:
        """ε of this epoch; with lr_epoch_offset 1 the cosine's lr of epoch + 1 ([SD] steps its scheduler at the
        start of each epoch)."""
        self.epsilon = epsilon_at(epoch, self.epochs, self.eps_min, self.eps_max)
        return set_lr(self.w_optimizer, cosine_lr(epoch + self.lr_epoch_offset, self.epochs, self.lr, self.lr_min))

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        return {**super().end_epoch(epochs_done, iim_batches), "epsilon": self.epsilon}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "noise": self.noise.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.noise.set_state(state["noise"])


class SmoothDartsAdv(SmoothDartsRs):
    """SDARTS-ADV on any space: the weight step mixes by the L∞ PGD attack on the train batch's CE."""

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.pgd_steps = int(cfg.option("pgd_steps"))
        if self.pgd_steps < 1:
            raise ValueError(f"SDARTS-ADV needs pgd_steps >= 1, got {self.pgd_steps}")
        self.step_factor = float(cfg.option("pgd_step_factor"))
        self.random_start = bool(cfg.option("random_start"))
        self.revert_if_no_gain = bool(cfg.option("revert_if_no_gain"))
        self.attack_bn_mode = cfg.option("attack_bn_mode")
        if self.attack_bn_mode not in ("eval", "train"):
            raise ValueError(f"SDARTS-ADV attack_bn_mode must be eval or train, got {self.attack_bn_mode!r}")
        self.attack_bn = bn_statistics(model, self.attack_bn_mode)
        log.info("SDARTS-ADV attacks in %s mode: %d BNs on running statistics, %d on batch statistics",
                 self.attack_bn_mode, self.attack_bn["running_stats"], self.attack_bn["batch_stats"])
        self.add_running("attack_gain")
        self.add_running("attack_failed")

    def perturb(self, probs: Tables, x: torch.Tensor, y: torch.Tensor) -> Tables:
        was_training = self.model.training
        self.model.train(self.attack_bn_mode == "train")
        try:
            return self.attack(probs, x, y)
        finally:
            self.model.train(was_training)

    def attack(self, probs: Tables, x: torch.Tensor, y: torch.Tensor) -> Tables:
        """[SD]'s Linf_PGD_alpha from S = `probs`, in the model's current mode."""
        epsilon, masks = self.epsilon, self.masks()
        step = self.step_factor * epsilon / self.pgd_steps
        with torch.no_grad():
            before = self.loss(x, y, weights=probs)[0]
        perturbed = self.uniform_start(probs, epsilon) if self.random_start else dict(probs)
        for _ in range(self.pgd_steps):
            leaves = {kind: t.detach().requires_grad_() for kind, t in perturbed.items()}
            loss, _ = self.loss(x, y, weights=leaves)
            grads = grads_or_zeros(loss, list(leaves.values()))
            with torch.no_grad():
                perturbed = {
                    kind: clip_rows(s + (leaves[kind] + step * g.sign() - s).clamp(-epsilon, epsilon), masks[kind])
                    for (kind, s), g in zip(probs.items(), grads, strict=True)
                }
        with torch.no_grad():
            after = self.loss(x, y, weights=perturbed)[0]
            failed = before > after
            if self.revert_if_no_gain:
                perturbed = {kind: torch.where(failed, probs[kind], t) for kind, t in perturbed.items()}
                gain = torch.where(failed, torch.zeros_like(after), after - before)
            else:
                gain = after - before
        self.accumulate("attack_gain", gain)
        self.accumulate("attack_failed", failed.double())
        return perturbed

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        """Adds the epoch's mean CE gain of the A used over S and the share of attacks that lowered CE."""
        counts = self.running_counts["attack_gain"]
        gain, failed = self.running["attack_gain"].clone(), self.running["attack_failed"].clone()
        record = super().end_epoch(epochs_done, iim_batches)
        record["attack_gain"] = (gain / counts).item() if counts else None
        record["attack_failed"] = (failed / counts).item() if counts else None
        record["attack_bn"] = dict(self.attack_bn)
        return record
