"""Progressive shrinking (spec §3.3): when to shrink, and which ops each step removes.

A comparison subset is a group of (edge, op) candidates that compete with each other: one edge on
NB201, all the inputs of a node on the DARTS space. Each step removes, in every subset, the
candidates with the largest hooked IIM (the least important), spreading the removals evenly so that
exactly `keep` survive after the last step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from isdarts.config.search import shrink_epochs

__all__ = ["Candidate", "ShrinkResult", "removals", "shrink_epochs", "shrink_step", "step_at"]

Candidate = tuple[int, int]  # (edge index, op index)


def step_at(epochs_done: int, schedule: Sequence[int]) -> int | None:
    """The 0-based shrink step that runs after `epochs_done` completed epochs, or None."""
    return schedule.index(epochs_done) if epochs_done in schedule else None


def removals(n_alive: int, keep: int, steps: int, step: int) -> int:
    """How many candidates a subset loses at `step`: ceil((alive - keep) / steps left)."""
    return max(0, math.ceil((n_alive - keep) / (steps - step)))


@dataclass(frozen=True)
class ShrinkResult:
    mask: torch.Tensor
    pruned: list[Candidate]


def shrink_step(
    mask: torch.Tensor,
    iim: torch.Tensor,
    subsets: Sequence[Sequence[Candidate]],
    *,
    keep: int,
    steps: int,
    step: int,
) -> ShrinkResult:
    """Return the new mask after one shrink step and the candidates it removed.

    Ranking is by IIM descending with a stable sort, so ties (several +inf, e.g. `none`) go in candidate
    order, as in the official code. Masked candidates never take part.
    """
    if not 0 <= step < steps:
        raise ValueError(f"shrink step {step} is outside 0..{steps - 1}")
    mask_rows = mask.detach().cpu().tolist()
    iim_rows = iim.detach().cpu().double().tolist()
    new_mask = mask.detach().clone()
    pruned: list[Candidate] = []
    for subset in subsets:
        alive = [(e, o) for e, o in subset if mask_rows[e][o] > 0.5]
        if len(alive) <= keep:
            continue
        for e, o in alive:
            if math.isnan(iim_rows[e][o]):
                raise ValueError(f"no IIM was measured for alive candidate (edge {e}, op {o})")
        ranked = sorted(alive, key=lambda c: -iim_rows[c[0]][c[1]])
        for e, o in ranked[: removals(len(alive), keep, steps, step)]:
            new_mask[e, o] = 0
            pruned.append((e, o))
    return ShrinkResult(new_mask, pruned)

