"""IS-DARTS (spec §3): plain weight training of the masked supernet plus IIM shrinking, on any space.

There are no architecture parameters and no bi-level split: every training image trains the weights,
and after each scheduled epoch the least important candidates (largest hooked IIM) are masked out. Each
cell kind is shrunk SEPARATELY with its own IIM table (spec §3.3), in the space's comparison groups: one
edge keeping 1 op on NB201, one node keeping 2 (op, input) pairs on the DARTS space. A shrink rate r is
S = 1/r steps (Table A.2); the final cell is the survivors once shrinking is over.

I-DARTS (spec §3.5) is IS-DARTS with a single selection step `final_epochs` before the end: after the last
epoch on NB201 (0), one epoch before it on the DARTS space (Table A.2's "rate 1" row: S=1, I=1).

Before shrinking is over, `genotype()` is the cell a final selection on the latest IIM would keep: the cell
the search would return if it stopped now (the argmax-cell trajectory of the collapse study).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig, shrink_epochs
from isdarts.errors import ConfigError, GenotypeError
from isdarts.search.base import Batches, cosine_lr, nan_to_none, set_lr, sgd_step
from isdarts.search.iim import measure_iim
from isdarts.search.shrink import shrink_step, step_at
from isdarts.search.speed import resolve_speed
from isdarts.spaces.space import Genotype, Space


class IsDarts:
    """IS-DARTS on any space: SGD on all data, the IIM when scheduled, one shrink step per cell kind."""

    bilevel = False

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        self.model, self.space, self.cfg = model, space, cfg
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
        self.criterion = nn.CrossEntropyLoss()
        # The IIM pass replays its batches as a CUDA graph, or compiles its reductions, where the speed
        # settings say so.
        plan = resolve_speed(cfg, next(model.parameters()).device)
        self.graphs, self.compiled_iim = plan.cuda_graphs, plan.compile_iim
        self.schedule = self.shrink_schedule(cfg)
        self.last_iim: dict[str, torch.Tensor] | None = None  # the latest IIM tables, for `genotype()`
        # Saved with checkpoints next to the masks (spec §8), so a resumed run knows where shrinking stands.
        self.shrink_steps_done = 0

    @staticmethod
    def shrink_schedule(cfg: SearchConfig) -> list[int]:
        """The epochs after which a shrink step runs: params.yaml's shrink settings."""
        return shrink_epochs(cfg.epochs, cfg.shrink.steps, cfg.shrink.interval, cfg.shrink.anchor)

    def set_epoch(self, epoch: int) -> float:
        return set_lr(self.optimizer, cosine_lr(epoch, self.cfg.epochs, self.cfg.lr, self.cfg.lr_min))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step; returns the detached loss and the number of correct predictions (device tensors)."""
        return sgd_step(self.model, self.optimizer, self.criterion, x, y, self.cfg.grad_clip)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[1]

    def needs_iim(self, epochs_done: int) -> bool:
        return self.cfg.iim.every_epoch or step_at(epochs_done, self.schedule) is not None

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches]) -> dict[str, Any]:
        """Measure the IIM when needed and run the scheduled shrink step on every kind; the epoch's record."""
        space = self.space
        record: dict[str, Any] = {
            "iim": None, "shrink_step": None, "pruned": space.record({kind: [] for kind in space.kinds}),
        }
        if not self.needs_iim(epochs_done):
            return record
        tables = measure_iim(self.model, iim_batches(), self.graphs, self.compiled_iim)
        self.last_iim = {kind: table.detach().cpu() for kind, table in tables.items()}
        record["iim"] = space.record({kind: nan_to_none(table) for kind, table in tables.items()})
        step = step_at(epochs_done, self.schedule)
        if step is None:
            return record
        pruned = {}
        # Each kind is ranked only against its own table; the kinds' masks never compete.
        for kind in space.kinds:
            result = shrink_step(
                self.model.get_mask(kind), tables[kind], space.subsets, keep=space.keep,
                steps=len(self.schedule), step=step,
            )
            self.model.set_mask(kind, result.mask)
            pruned[kind] = [[space.edges[e], space.op_name(kind, e, o)] for e, o in result.pruned]
        self.shrink_steps_done = step + 1
        record["shrink_step"] = step
        record["pruned"] = space.record(pruned)
        return record

    def genotype(self) -> Genotype:
        """The survivors once shrinking is over (spec §3.4). Before that, per comparison group the alive
        candidates with the best (lowest hooked) IIM of the latest measurement; before any measurement, a
        GenotypeError (the mask alone ranks nothing)."""
        space = self.space
        masks = space.masks(self.model)
        if space.shrinking_done(masks):
            return space.genotype_from_masks(masks)
        if self.last_iim is None:
            raise GenotypeError(
                f"{type(self).__name__}: the cell is only defined after the last shrink step "
                f"({self.shrink_steps_done}/{len(self.schedule)} done, shrink epochs {self.schedule}) or an IIM "
                "measurement (iim.every_epoch)"
            )
        return space.genotype_from_masks({
            kind: shrink_step(masks[kind], self.last_iim[kind], space.subsets, keep=space.keep, steps=1, step=0).mask
            for kind in space.kinds
        })

    def state_dict(self) -> dict[str, Any]:
        """Model (masks included, as buffers), optimizer, the latest IIM and the shrink-step counter."""
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "last_iim": self.last_iim,
            "shrink_steps_done": self.shrink_steps_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The model's load hook refreshes its host-side alive lists from the loaded masks.
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.last_iim = state.get("last_iim")
        self.shrink_steps_done = int(state.get("shrink_steps_done", 0))


class IDarts(IsDarts):
    """I-DARTS: one selection step `final_epochs` before the end, keeping each group's best survivors.

    One step prunes, in every comparison group, all but the `keep` candidates with the smallest hooked
    IIM (the highest paper-IIM); `none` scores +inf and so never survives. There are no shrink settings.
    """

    @staticmethod
    def shrink_schedule(cfg: SearchConfig) -> list[int]:
        """A one-entry schedule: the IIM is measured once, `final_epochs` before the end, and selects."""
        final = cfg.option("final_epochs")
        if not 0 <= final < cfg.epochs:
            raise ConfigError(
                f"params.yaml: {cfg.space}.options.{cfg.method}.final_epochs = {final} must be in 0..{cfg.epochs - 1} "
                f"(epochs = {cfg.epochs})"
            )
        return [cfg.epochs - final]
