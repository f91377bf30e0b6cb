"""What the search loop may ask of a search method (`SearchMethod`), and the optimiser helpers they share.

Every method is built as `Method(model, space, cfg, generator)` from a supernet, its space
(`isdarts.spaces.space.Space`), its resolved `SearchConfig` and the generator that draws α (methods without
α ignore it); the methods table (`isdarts.registry`) says which class that is. One class runs a method on
every space: it reads kinds, edges, ops and comparison groups from the space, never a space's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from isdarts.spaces.space import Space

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class SearchMethod(Protocol):
    """One search method on one space: the only surface `isdarts.search.loop` talks to."""

    # True: `train_step(x_train, y_train, x_valid, y_valid)` on the bi-level split; False: `train_step(x, y)`.
    # Bi-level methods also have `arch_weights()`: the op mixing weights (softmax of α), recorded per epoch.
    bilevel: ClassVar[bool]
    model: nn.Module
    space: Space
    # Completed-epoch counts after which a shrink step runs (empty for methods that never shrink).
    schedule: list[int]

    def set_epoch(self, epoch: int) -> float:
        """Start 0-based `epoch`; returns its learning rate."""
        ...

    def train_step(self, *batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step; returns the detached loss and the number of correct predictions (device tensors)."""
        ...

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The supernet's logits as the method mixes its ops (for evaluation)."""
        ...

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        """End-of-epoch work (IIM, shrinking); returns the method's part of the epoch's history record."""
        ...

    def genotype(self) -> Any:
        """The cell the search has found so far; raises GenotypeError while it is undefined."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    # Optional surface (the loop looks for them):
    # `train_batch_size` (int attribute): the weight-step batch size of the next epoch, if the method changes it;
    # `attach_data(images, generator)`: called once before the first epoch with the valid half (bi-level methods;
    # the training images otherwise) as `isdarts.data.device_loader.DeviceImages`, and a generator the loop
    # checkpoints, for methods that measure the supernet on a whole data set.

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def cosine_lr(epoch: int, total: int, lr: float, lr_min: float) -> float:
    """AutoDL's per-epoch cosine: constant within an epoch, lr at epoch 0 (spec §3.1)."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / total)) / 2


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Set every parameter group's learning rate; returns it."""
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


def nan_to_none(table: torch.Tensor) -> list[list[float | None]]:
    """A table as nested lists with NaN (a masked entry) as None, so the history stays plain JSON."""
    return [[None if v != v else v for v in row] for row in table.tolist()]
