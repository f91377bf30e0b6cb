"""The argmax-cell trajectory of a search (the collapse study): at each epoch end, the cell the search would
return if it stopped now, and what that cell is made of.

DARTS-family methods return the argmax of their α (their `genotype()` at any time); IS-DARTS-family ones
the cell a final selection on the latest IIM would keep (theirs, before shrinking is over). On NB201 the
cell's six 200-epoch benchmark accuracies come from the shipped table, so each epoch shows how good the
cell a stop there would give is; DARTS collapse shows as parameter-free edges taking over. The report draws
these records (isdarts.report.trajectory).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from isdarts.benchmark.nb201 import default_table
from isdarts.spaces.darts.genotype import DartsGenotype
from isdarts.spaces.nb201.genotype import Nb201Genotype


def describe_cell(genotype: Nb201Genotype | DartsGenotype | None) -> dict[str, Any] | None:
    """What the history records of a cell: NB201, its parameter-free and skip edges and its benchmark
    accuracies; DARTS space, its parameter-free and skip inputs per node of each cell kind, and as totals
    those of the normal cell (where DARTS collapse shows)."""
    if genotype is None:
        return None
    if isinstance(genotype, Nb201Genotype):
        return {
            "param_free": genotype.param_free_count(), "skip": genotype.skip_count(),
            "benchmark": default_table().lookup(genotype).accuracies(),
        }
    per_node = {
        "param_free_per_node": {k: genotype.param_free_per_node(k) for k in ("normal", "reduce")},
        "skip_per_node": {k: genotype.skips_per_node(k) for k in ("normal", "reduce")},
    }
    return {
        "param_free": sum(per_node["param_free_per_node"]["normal"]),
        "skip": sum(per_node["skip_per_node"]["normal"]),
        **per_node,
    }


def op_weights(weights: torch.Tensor | Sequence[torch.Tensor], kinds: Sequence[str] | None) -> Any:
    """A DARTS-family method's mixing weights (softmax of α, masked where the method masks) as nested
    lists: (edges, ops) on NB201, {kind: (edges, ops)} on the DARTS space."""
    if kinds is None:
        return weights.detach().cpu().double().tolist()  # type: ignore[union-attr]
    return {kind: w.detach().cpu().double().tolist() for kind, w in zip(kinds, weights, strict=True)}
