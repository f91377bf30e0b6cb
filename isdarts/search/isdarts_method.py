"""IS-DARTS on NAS-Bench-201: plain weight training of the masked supernet plus IIM shrinking (spec §3).

There are no architecture parameters and no bi-level split: every training image trains the weights,
and after the scheduled epochs the least important op of every edge is masked out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from isdarts.config import SearchConfig
from isdarts.search.iim import measure_iim
from isdarts.search.shrink import per_edge_subsets, shrink_epochs, shrink_step, step_at
from isdarts.spaces.nb201_genotype import NB201_EDGES, NB201_OPS, Nb201Genotype
from isdarts.spaces.nb201_supernet import Nb201Supernet

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def cosine_lr(epoch: int, total: int, lr: float, lr_min: float) -> float:
    """AutoDL's per-epoch cosine: constant within an epoch, lr at epoch 0 (spec §3.1)."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / total)) / 2



def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def sgd_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module, x: torch.Tensor, y: torch.Tensor,
    grad_clip: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One weight step on all training data (no bi-level split): the detached loss and the correct count."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    _, logits = model(x)
    loss = criterion(logits, y)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach(), (logits.detach().argmax(1) == y).sum()


class IsDartsNb201:
    """The IS-DARTS search method: `train_step` per batch, `end_epoch` after each epoch."""

    name = "isdarts"

    def __init__(self, model: Nb201Supernet, cfg: SearchConfig) -> None:
        self.model, self.cfg = model, cfg
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
        self.criterion = nn.CrossEntropyLoss()
        self.schedule = shrink_epochs(cfg.epochs, cfg.shrink.steps, cfg.shrink.interval, cfg.shrink.anchor)
        self.subsets = per_edge_subsets(model.mask.shape[0], model.mask.shape[1])

    def set_epoch(self, epoch: int) -> float:
        return set_lr(self.optimizer, cosine_lr(epoch, self.cfg.epochs, self.cfg.lr, self.cfg.lr_min))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step; returns the detached loss and the number of correct predictions (device tensors)."""
        return sgd_step(self.model, self.optimizer, self.criterion, x, y, self.cfg.grad_clip)

    def needs_iim(self, epochs_done: int) -> bool:
        return self.cfg.iim.every_epoch or step_at(epochs_done, self.schedule) is not None

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches]) -> dict[str, Any]:
        """Measure the IIM when needed and run the scheduled shrink step; returns the epoch's record."""
        record: dict[str, Any] = {"iim": None, "shrink_step": None, "pruned": []}
        if not self.needs_iim(epochs_done):
            return record
        iim = measure_iim(self.model, iim_batches())
        # Masked entries are NaN in the table; store them as null so the history stays plain JSON.
        record["iim"] = [[None if v != v else v for v in row] for row in iim.tolist()]
        step = step_at(epochs_done, self.schedule)
        if step is not None:
            result = shrink_step(
                self.model.mask, iim, self.subsets, keep=1, steps=len(self.schedule), step=step
            )
            self.model.set_mask(result.mask)
            record["shrink_step"] = step
            record["pruned"] = [[NB201_EDGES[e], NB201_OPS[o]] for e, o in result.pruned]
        return record

    def genotype(self) -> Nb201Genotype:
        """Per edge, the first op the mask keeps: the single survivor once shrinking is over."""
        return Nb201Genotype(tuple(NB201_OPS[ops[0]] for ops in self.model.alive))

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
