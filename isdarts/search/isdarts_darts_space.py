"""IS-DARTS on the DARTS (NASNet-like) space (spec §2, §3): weight training of the masked supernet plus IIM shrinking.

Same surface as `IsDartsNb201` (`set_epoch`, `train_step`, `needs_iim`, `end_epoch`, `genotype`, `state_dict`),
with two differences the space imposes:
- normal and reduction cells have their own (14, 8) mask and their own IIM table, and at every shrink step
  each mask is shrunk SEPARATELY with its own table (spec §3.3);
- the comparison subset is a node (all (edge, op) entering it, 16/24/32/40 candidates) and keep = 2, so
  each step removes ceil((alive - 2) / steps left) per node and the last step leaves exactly two.

General rule (Table A.2): a shrink rate r corresponds to S = 1/r steps (paper: r = 1/7, S = 7). S = 1 prunes
n - 2 per node in its single step: that is the I-DARTS "rate 1" row.

`genotype()` is only defined once shrinking is over (two survivors per node); before that it raises
`GenotypeError`. Check `shrinking_done` first when recording a per-epoch genotype.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from isdarts.search.iim import IimAccumulator, aggregate_cells, run_probe_pass
from isdarts.search.isdarts_method import cosine_lr, set_lr, sgd_step
from isdarts.search.shrink import shrink_epochs, shrink_step, step_at
from isdarts.spaces.darts_genotype import DartsGenotype, GenotypeError
from isdarts.spaces.darts_ops import DARTS_SEARCH_OPS
from isdarts.spaces.darts_supernet import CELL_KINDS, DARTS_EDGES, DartsSupernet

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]

KEEP = 2  # survivors per node: a DARTS cell node has two inputs


def measure_iim_darts(model: DartsSupernet, batches: Batches) -> dict[str, torch.Tensor]:
    """The (14, 8) IIM table of each cell kind, {"normal": ..., "reduce": ...}; masked entries are NaN.

    One accumulator per kind, averaged over that kind's cells (spec §3.2), measured in the same eval-mode
    pass as `measure_iim`.
    """
    device = model.normal_mask.device
    accs = {kind: IimAccumulator(model.num_cells(kind), *model.get_mask(kind).shape, device) for kind in CELL_KINDS}

    def probe(kind: str, cell: int, edge: int, op: int, out: torch.Tensor) -> None:
        accs[kind](cell, edge, op, out)

    run_probe_pass(model, batches, probe)
    return {
        kind: aggregate_cells(acc.per_cell()).masked_fill(model.get_mask(kind) == 0, float("nan"))
        for kind, acc in accs.items()
    }


def alive_per_node(mask: torch.Tensor, subsets: list[list[tuple[int, int]]]) -> list[int]:
    """How many (edge, op) candidates of each node the mask keeps."""
    rows = mask.detach().cpu().tolist()
    return [sum(rows[e][o] > 0.5 for e, o in subset) for subset in subsets]


class IsDartsDartsSpace:
    """The IS-DARTS search method on the DARTS space: `train_step` per batch, `end_epoch` after each epoch.

    Defaults are the code's DARTS-CIFAR search settings (spec §3.1, §3.3): SGD nesterov, momentum 0.9,
    lr 0.025 cosine per epoch to 0.001, wd 3e-4, clip 5, 50 epochs, 7 shrink steps every 3 epochs.
    """

    name = "isdarts"

    def __init__(
        self,
        model: DartsSupernet,
        *,
        epochs: int = 50,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        shrink_steps: int = 7,
        shrink_interval: int = 3,
        shrink_anchor: str = "start",
        iim_every_epoch: bool = False,
    ) -> None:
        self.model = model
        self.epochs, self.lr, self.lr_min, self.grad_clip = epochs, lr, lr_min, grad_clip
        self.iim_every_epoch = iim_every_epoch
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
        self.criterion = nn.CrossEntropyLoss()
        self.schedule = shrink_epochs(epochs, shrink_steps, shrink_interval, shrink_anchor)
        self.subsets = model.node_subsets()
        # Saved with checkpoints next to the masks (spec §8), so a resumed run knows where shrinking stands.
        self.shrink_steps_done = 0

    def set_epoch(self, epoch: int) -> float:
        return set_lr(self.optimizer, cosine_lr(epoch, self.epochs, self.lr, self.lr_min))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step; returns the detached loss and the number of correct predictions (device tensors)."""
        return sgd_step(self.model, self.optimizer, self.criterion, x, y, self.grad_clip)

    def needs_iim(self, epochs_done: int) -> bool:
        return self.iim_every_epoch or step_at(epochs_done, self.schedule) is not None

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches]) -> dict[str, Any]:
        """Measure the IIM when needed and run the scheduled shrink step on both masks; returns the epoch's record."""
        record: dict[str, Any] = {"iim": None, "shrink_step": None, "pruned": {kind: [] for kind in CELL_KINDS}}
        if not self.needs_iim(epochs_done):
            return record
        tables = measure_iim_darts(self.model, iim_batches())
        # NaN (masked) -> null so the history stays plain JSON.
        record["iim"] = {
            kind: [[None if v != v else v for v in row] for row in table.tolist()] for kind, table in tables.items()
        }
        step = step_at(epochs_done, self.schedule)
        if step is None:
            return record
        # Each kind is ranked only against its own table; the two masks never compete.
        for kind in CELL_KINDS:
            result = shrink_step(
                self.model.get_mask(kind), tables[kind], self.subsets, keep=KEEP, steps=len(self.schedule), step=step
            )
            self.model.set_mask(kind, result.mask)
            record["pruned"][kind] = [[DARTS_EDGES[e], DARTS_SEARCH_OPS[o]] for e, o in result.pruned]
        self.shrink_steps_done = step + 1
        record["shrink_step"] = step
        return record

    @property
    def shrinking_done(self) -> bool:
        """True once every node of both kinds is down to its two survivors."""
        return all(n <= KEEP for kind in CELL_KINDS for n in alive_per_node(self.model.get_mask(kind), self.subsets))

    def genotype(self) -> DartsGenotype:
        """The final genotype from the masks (spec §3.4); raises GenotypeError while shrinking is unfinished."""
        if not self.shrinking_done:
            raise GenotypeError(
                f"IS-DARTS genotype is only defined after the last shrink step "
                f"({self.shrink_steps_done}/{len(self.schedule)} done, shrink epochs {self.schedule})"
            )
        return self.model.genotype_from_masks()

    def state_dict(self) -> dict[str, Any]:
        """Model (masks included, as buffers), optimizer, and the shrink-step counter."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "shrink_steps_done": self.shrink_steps_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The model's load hook refreshes its host-side alive lists from the loaded masks.
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.shrink_steps_done = int(state.get("shrink_steps_done", 0))
