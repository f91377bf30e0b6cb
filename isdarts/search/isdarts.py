"""IS-DARTS (spec §3): plain weight training of the masked supernet plus IIM shrinking, on both spaces.

There are no architecture parameters and no bi-level split: every training image trains the weights,
and after each scheduled epoch the least important candidates (largest hooked IIM) are masked out.
- NB201: one (6, 5) mask; each edge is a comparison subset and keeps 1 op.
- DARTS space: a (14, 8) mask per cell kind, each shrunk SEPARATELY with its own IIM table (spec §3.3);
  each node is a comparison subset (16/24/32/40 candidates) and keeps 2. A shrink rate r is S = 1/r steps
  (Table A.2); the genotype is only defined once shrinking is over.

I-DARTS (spec §3.5) is IS-DARTS with a single selection step: `IDartsNb201` selects after the last epoch;
`IDartsDartsSpace` is the Table A.2 "rate 1" row (one step, interval 1).

Before shrinking is over, `genotype()` is the cell a final selection on the latest IIM would keep: the cell
the search would return if it stopped now (the argmax-cell trajectory of the collapse study).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.errors import GenotypeError
from isdarts.search.base import Batches, cosine_lr, nan_to_none, set_lr, sgd_step
from isdarts.search.iim import measure_iim, measure_iim_darts
from isdarts.search.shrink import shrink_epochs, shrink_step, step_at
from isdarts.search.speed import resolve_speed
from isdarts.spaces.darts.genotype import INPUTS_PER_NODE, DartsGenotype
from isdarts.spaces.darts.ops import DARTS_SEARCH_OPS
from isdarts.spaces.darts.supernet import CELL_KINDS, DARTS_EDGES, DartsSupernet
from isdarts.spaces.nb201.genotype import NB201_EDGES, NB201_OPS, Nb201Genotype
from isdarts.spaces.nb201.supernet import Nb201Supernet, per_edge_subsets


class _IsDarts:
    """What IS-DARTS does the same on both spaces: SGD on all data, the cosine schedule, when to measure."""

    bilevel = False

    def __init__(self, model: nn.Module, cfg: SearchConfig, generator: torch.Generator | None = None) -> None:
        self.model, self.cfg = model, cfg
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
        self.last_iim: Any = None  # the latest IIM table(s) measured, for `genotype()` before shrinking ends

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

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "last_iim": self.last_iim}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The model's load hook refreshes its host-side alive lists from the loaded masks.
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.last_iim = state.get("last_iim")


class IsDartsNb201(_IsDarts):
    """IS-DARTS on NAS-Bench-201: `train_step` per batch, `end_epoch` after each epoch."""

    model: Nb201Supernet

    def __init__(self, model: Nb201Supernet, cfg: SearchConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(model, cfg, generator)
        self.subsets = per_edge_subsets()

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches]) -> dict[str, Any]:
        """Measure the IIM when needed and run the scheduled shrink step; returns the epoch's record."""
        record: dict[str, Any] = {"iim": None, "shrink_step": None, "pruned": []}
        if not self.needs_iim(epochs_done):
            return record
        iim = measure_iim(self.model, iim_batches(), self.graphs, self.compiled_iim)
        self.last_iim = iim.detach().cpu()
        record["iim"] = nan_to_none(iim)
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
        """Per edge, the op shrinking kept. Before that, the alive op with the best (lowest hooked) IIM of
        the latest measurement; before any measurement, a GenotypeError (the mask alone ranks nothing)."""
        if self.model.shrinking_done:
            return self.model.genotype_from_mask()
        if self.last_iim is None:
            raise GenotypeError(
                f"{type(self).__name__}: the cell is only defined after the first IIM measurement (shrink epochs "
                f"{self.schedule}, or every epoch with iim.every_epoch)"
            )
        mask = shrink_step(self.model.mask, self.last_iim, self.subsets, keep=1, steps=1, step=0).mask
        return Nb201Genotype.from_op_indices(mask.argmax(dim=1).tolist())


class IDartsNb201(IsDartsNb201):
    """I-DARTS on NB201: the only shrink step runs after the last epoch and keeps one op per edge.

    One step with keep=1 prunes the 4 largest hooked values of each edge, i.e. keeps the argmin (the
    highest paper-IIM); `none` scores +inf and so never survives. There are no shrink settings.
    """

    @staticmethod
    def shrink_schedule(cfg: SearchConfig) -> list[int]:
        """A one-entry schedule: the parent's end_epoch measures once after the last epoch and selects."""
        return [cfg.epochs]


class IsDartsDartsSpace(_IsDarts):
    """IS-DARTS on the DARTS space: both cell kinds shrunk per node, each by its own IIM table.

    `genotype()` raises GenotypeError before the first IIM measurement.
    """

    model: DartsSupernet

    def __init__(self, model: DartsSupernet, cfg: SearchConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(model, cfg, generator)
        self.subsets = model.node_subsets()
        # Saved with checkpoints next to the masks (spec §8), so a resumed run knows where shrinking stands.
        self.shrink_steps_done = 0

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches]) -> dict[str, Any]:
        """Measure the IIM when needed and run the scheduled shrink step on both masks; returns the epoch's record."""
        record: dict[str, Any] = {"iim": None, "shrink_step": None, "pruned": {kind: [] for kind in CELL_KINDS}}
        if not self.needs_iim(epochs_done):
            return record
        tables = measure_iim_darts(self.model, iim_batches(), self.graphs, self.compiled_iim)
        self.last_iim = {kind: table.detach().cpu() for kind, table in tables.items()}
        record["iim"] = {kind: nan_to_none(table) for kind, table in tables.items()}
        step = step_at(epochs_done, self.schedule)
        if step is None:
            return record
        # Each kind is ranked only against its own table; the two masks never compete.
        for kind in CELL_KINDS:
            result = shrink_step(
                self.model.get_mask(kind), tables[kind], self.subsets, keep=INPUTS_PER_NODE,
                steps=len(self.schedule), step=step,
            )
            self.model.set_mask(kind, result.mask)
            record["pruned"][kind] = [[DARTS_EDGES[e], DARTS_SEARCH_OPS[o]] for e, o in result.pruned]
        self.shrink_steps_done = step + 1
        record["shrink_step"] = step
        return record

    def genotype(self) -> DartsGenotype:
        """The final genotype from the masks (spec §3.4). Before shrinking is over, per node the two alive
        candidates with the best IIM of the latest measurement; before any, a GenotypeError."""
        if self.model.shrinking_done:
            return self.model.genotype_from_masks()
        if self.last_iim is None:
            raise GenotypeError(
                f"IS-DARTS genotype is only defined after the last shrink step "
                f"({self.shrink_steps_done}/{len(self.schedule)} done, shrink epochs {self.schedule}) or "
                "an IIM measurement (iim.every_epoch)"
            )
        return self.model.genotype_from_masks({
            kind: shrink_step(self.model.get_mask(kind), self.last_iim[kind], self.subsets, keep=INPUTS_PER_NODE,
                              steps=1, step=0).mask
            for kind in CELL_KINDS
        })

    def state_dict(self) -> dict[str, Any]:
        """Model (masks included, as buffers), optimizer, and the shrink-step counter."""
        return {**super().state_dict(), "shrink_steps_done": self.shrink_steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.shrink_steps_done = int(state.get("shrink_steps_done", 0))


class IDartsDartsSpace(IsDartsDartsSpace):
    """I-DARTS on the DARTS space: one selection step (interval 1) leaving two candidates per node."""

    @staticmethod
    def shrink_schedule(cfg: SearchConfig) -> list[int]:
        """One step with interval 1, anchored as IS-DARTS's schedule: the Table A.2 "rate 1" row (spec §3.5)."""
        return shrink_epochs(cfg.epochs, 1, 1)
