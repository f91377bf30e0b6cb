"""How the candidate ops of an edge are mixed, beyond a plain weight table: the strategies a method may pass
to a supernet as a kind's `weights` (isdarts.spaces.space), interpreted once by the cell loops of
isdarts.spaces.common for every space, fused path included.

- None: every alive op, weight mask/|O| (IS-DARTS).
- an (edges, ops) tensor: every alive op times its weight (DARTS and its relatives).
- `SampledPath`: one op per edge (GDAS); the others are never computed.

A leaf module (torch only), so the cell loops and the methods both import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

Alive = tuple[tuple[int, ...], ...]  # per edge, the op indices the mask keeps


@dataclass(frozen=True)
class SampledPath:
    """One op per edge: edge e runs only op `index[e]` (host-side, so no device sync per op) and scales it
    by `hard[e, index[e]]`.

    `hard` is a straight-through one-hot (value 1 at the chosen op, exactly 0 elsewhere, with a gradient).
    With `scalar_sum` the node also adds Σ_{o ≠ index[e]} hard[e, o] for each of its edges: scalars whose
    value is exactly 0 but through which every unselected entry receives the element sum of the node's
    output gradient (AutoDL's NB201 GDAS cell). A chosen op the mask has removed runs nothing.
    """

    hard: torch.Tensor
    index: tuple[int, ...]
    scalar_sum: bool = False

    def alive(self, alive: Alive) -> Alive:
        """The mask's alive lists narrowed to the sampled op of each edge."""
        return tuple((k,) if k in ops else () for k, ops in zip(self.index, alive, strict=True))

    @cached_property
    def unselected(self) -> torch.Tensor | None:
        """Per edge Σ_{o ≠ index[e]} hard[e, o] (exact zeros carrying gradient), or None without scalar_sum;
        computed once per sample, not once per node of every cell that mixes by it."""
        if not self.scalar_sum:
            return None
        chosen = torch.zeros_like(self.hard, dtype=torch.bool)
        chosen[torch.arange(len(self.index)), torch.tensor(self.index)] = True
        return self.hard.masked_fill(chosen, 0.0).sum(dim=-1)


def node_scalars(path: SampledPath | None, edges: Sequence[int]) -> torch.Tensor | None:
    """The unselected scalars of a node's input edges, summed; None when there are none to add."""
    if path is None:
        return None
    unselected = path.unselected
    if unselected is None:
        return None
    return unselected[list(edges)].sum()
