"""The argmax-cell trajectory of a search (the collapse study): at each epoch end, the cell the search would
return if it stopped now, and what that cell is made of.

DARTS-family methods return the argmax of their α (their `genotype()` at any time); IS-DARTS-family ones
the cell a final selection on the latest IIM would keep (theirs, before shrinking is over). On NB201 the
cell's six 200-epoch benchmark accuracies come from the shipped table, so each epoch shows how good the
cell a stop there would give is; DARTS collapse shows as parameter-free edges taking over. The report draws
these records (isdarts.report.trajectory).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from isdarts.registry import load
from isdarts.spaces.space import Genotype, Space


def describe_cell(space: Space, genotype: Genotype | None) -> dict[str, Any] | None:
    """What the history records of a cell: its parameter-free and skip counts (the space's `describe`: per
    edge on NB201, per node of each kind on the DARTS space) and, where the space has a benchmark, the
    cell's accuracies in it."""
    if genotype is None:
        return None
    cell = space.describe(genotype)
    if space.benchmark is not None:
        cell["benchmark"] = load(space.benchmark)().lookup(genotype).accuracies()
    return cell


def op_weights(space: Space, weights: Mapping[str, torch.Tensor]) -> Any:
    """A DARTS-family method's mixing weights (softmax of α, masked where the method masks) as nested
    lists in the history's shape: (edges, ops) on NB201, {kind: (edges, ops)} on the DARTS space."""
    return space.record({kind: w.detach().cpu().double().tolist() for kind, w in weights.items()})
