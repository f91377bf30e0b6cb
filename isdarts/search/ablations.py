"""The IS-DARTS ablations on NAS-Bench-201 (spec §3.5, paper App. B).

- I-DARTS: the IIM without shrinking. IS-DARTS training with the all-ones mask, one IIM measurement
  after the last epoch, and a one-step selection keeping the op with the smallest hooked value per edge.
- S-DARTS: shrinking without the IIM. DARTS-style α (first order by default) mixed by a masked softmax;
  each shrink step masks the smallest α among the alive ops of every edge.

The DARTS-space S-DARTS is `isdarts.search.darts_space_baselines.SDartsDartsSpace`; the DARTS-space
I-DARTS is `IsDartsDartsSpace` with one shrink step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from isdarts.config import Nb201SearchConfig
from isdarts.search.darts_method import Batches, DartsNb201
from isdarts.search.isdarts_method import IsDartsNb201
from isdarts.search.shrink import per_edge_subsets, shrink_epochs, shrink_step, step_at
from isdarts.spaces.nb201_genotype import NB201_EDGES, NB201_OPS, Nb201Genotype
from isdarts.spaces.nb201_supernet import Nb201Supernet


class IDartsNb201(IsDartsNb201):
    """I-DARTS: IS-DARTS whose only shrink step runs after the last epoch and keeps one op per edge.

    One step with keep=1 prunes the 4 largest hooked values of each edge, i.e. keeps the argmin (the
    highest paper-IIM); `none` scores +inf and so never survives. `cfg.shrink` is ignored.
    """

    name = "idarts"

    def __init__(self, model: Nb201Supernet, cfg: Nb201SearchConfig) -> None:
        super().__init__(model, cfg)
        # A one-entry schedule makes the parent's end_epoch measure once and select in one step.
        self.schedule = [cfg.epochs]
        self._last_iim: torch.Tensor | None = None

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches]) -> dict[str, Any]:
        record = super().end_epoch(epochs_done, iim_batches)
        if record["iim"] is not None:
            self._last_iim = torch.tensor(
                [[float("nan") if v is None else v for v in row] for row in record["iim"]], dtype=torch.float64
            )
        return record

    def genotype(self) -> Nb201Genotype:
        """After the selection: the survivors. Before it: what a selection on the latest IIM would pick
        (only measured when `iim.every_epoch`), else the mask's first op, as IS-DARTS reports."""
        if self._last_iim is None or all(len(ops) == 1 for ops in self.model.alive):
            return super().genotype()
        mask = shrink_step(self.model.mask, self._last_iim, self.subsets, keep=1, steps=1, step=0).mask
        return Nb201Genotype.from_op_indices(mask.argmax(dim=1).tolist())

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "last_iim": self._last_iim}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._last_iim = state.get("last_iim")


class SDartsNb201(DartsNb201):
    """S-DARTS: DARTS α with a masked softmax and progressive shrinking ranked by α (IS-DARTS schedule)."""

    name = "sdarts"

    def __init__(
        self,
        model: Nb201Supernet,
        *,
        epochs: int,
        shrink_steps: int = 4,
        shrink_interval: int = 2,
        **darts_kwargs: Any,
    ) -> None:
        super().__init__(model, epochs=epochs, **darts_kwargs)
        self.schedule = shrink_epochs(epochs, shrink_steps, shrink_interval)
        self.subsets = per_edge_subsets(model.mask.shape[0], model.mask.shape[1])

    def arch_weights(self) -> torch.Tensor:
        """Softmax over the alive ops only: masked logits are -inf, so they get exactly zero weight."""
        return torch.softmax(self.alpha.masked_fill(self.model.mask == 0, float("-inf")), dim=-1)

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches]) -> dict[str, Any]:
        record = super().end_epoch(epochs_done, iim_batches)
        step = step_at(epochs_done, self.schedule)
        if step is not None:
            # shrink_step removes the largest score, so rank by -α to remove the smallest α.
            score = -self.alpha.detach().double()
            result = shrink_step(self.model.mask, score, self.subsets, keep=1, steps=len(self.schedule), step=step)
            self.model.set_mask(result.mask)
            record["shrink_step"] = step
            record["pruned"] = [[NB201_EDGES[e], NB201_OPS[o]] for e, o in result.pruned]
        return record
