"""The auxiliary path of DARTS- (FAMILY.md "DARTS-"): a strategy a method passes as a kind's `weights`, and the
per-edge modules a supernet holds for it.

Every edge e of a search cell adds β·aux_e(x) to its softmax-mixed candidate ops, with x the edge's own input
state: outside the softmax, with no architecture parameter, in every forward (training and evaluation).
aux_e is the identity on stride-1 edges (`skip`), or with `conv1` a bias-free 1x1 conv initialised to the
identity ([DM] `--auxiliary_operation conv1`); on stride-2 edges (the DARTS space's reduction-cell edges from
the cell inputs) it is a learnable FactorizedReduce(C, C) with the cell's BN settings, whatever the option.
The conv modules are ordinary weights (in `model.parameters()`: trained by SGD, counted by the clip).

A supernet holds these modules only when built with `auxiliary="skip"` or `"conv1"`; it adds them after all
its other modules, so those are initialised exactly as in a supernet built without them (the same seed gives
the same numbers). Such a supernet takes only `AuxiliarySkip` weights (β may be 0), a supernet without them
refuses `AuxiliarySkip`: the aux path can be neither forgotten nor silently dropped. The cell loops that add
the terms are in isdarts.spaces.common; how a supernet runs a group of FactorizedReduce modules as one call is
its own (`reduce_group`).

A leaf module (torch and isdarts.spaces.fused only), so the cell loops and the methods both import it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from isdarts.spaces.fused import conv_shared, split_blocks

AUXILIARY_OPS: tuple[str, ...] = ("skip", "conv1")
# Runs the stride-2 aux modules of the edges leaving one state on that state, as one call: (B, k, C, H/2, W/2).
ReduceGroup = Callable[[torch.Tensor, Sequence[nn.Module]], torch.Tensor]


@dataclass(frozen=True)
class AuxiliarySkip:
    """Mix each edge's ops by `weights` (edges, ops), as DARTS does, and add β·aux_e(x) per edge.

    `beta` is a 0-dim tensor (or a float): as a tensor a new value is a new input, not a new constant, to a
    compiled forward or a captured CUDA graph.
    """

    weights: torch.Tensor
    beta: torch.Tensor | float


def check_auxiliary(op: str | None) -> None:
    """Refuse an auxiliary op other than None (no aux path) and AUXILIARY_OPS."""
    if op is not None and op not in AUXILIARY_OPS:
        raise ValueError(
            f"unknown auxiliary op {op!r}; expected one of {', '.join(AUXILIARY_OPS)} (or None: no aux path)"
        )


def identity_conv1x1(channels: int) -> nn.Conv2d:
    """A bias-free 1x1 conv whose weight is the identity matrix: the skip, made learnable."""
    conv = nn.Conv2d(channels, channels, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
    return conv


def auxiliary_modules(
    op: str, channels: int, strides: Sequence[int], make_reduce: Callable[[], nn.Module] | None = None
) -> nn.ModuleList:
    """One aux module per edge of a cell: `make_reduce()` on stride-2 edges, else by `op` (see the module doc)."""
    check_auxiliary(op)
    modules: list[nn.Module] = []
    for stride in strides:
        if stride == 2:
            if make_reduce is None:
                raise ValueError("a stride-2 edge needs a reducing aux module; pass make_reduce")
            modules.append(make_reduce())
        elif stride != 1:
            raise ValueError(f"the aux path supports stride 1 and 2, got {stride}")
        else:
            modules.append(nn.Identity() if op == "skip" else identity_conv1x1(channels))
    return nn.ModuleList(modules)


class AuxiliaryTerms:
    """One cell forward's aux terms β·aux_e(x): one edge at a time (the reference loop) or all the edges
    that leave one state at once (the fused loop; the edges leaving one state share one stride)."""

    def __init__(
        self, modules: nn.ModuleList, beta: torch.Tensor | float, reduce_group: ReduceGroup | None = None
    ) -> None:
        self.modules, self.beta, self.reduce_group = modules, beta, reduce_group

    def edge(self, edge: int, x: torch.Tensor) -> torch.Tensor:
        return self.modules[edge](x) * self.beta

    def group(self, x: torch.Tensor, edges: Sequence[int]) -> dict[int, torch.Tensor]:
        """{edge: its term} for `edges`, all reading x, each module kind run once for all of them."""
        units = [self.modules[e] for e in edges]
        if all(isinstance(u, nn.Identity) for u in units):
            stacked = x.unsqueeze(1)  # one output shared by every edge, as their values are the same
        elif all(isinstance(u, nn.Conv2d) for u in units):
            stacked = split_blocks(conv_shared(x, units), len(units))
        else:
            if self.reduce_group is None:
                raise ValueError(f"no fused runner for the aux modules {sorted({type(u).__name__ for u in units})}")
            stacked = self.reduce_group(x, units)
        pieces = (stacked * self.beta).unbind(1)
        return {e: pieces[0 if len(pieces) == 1 else i] for i, e in enumerate(edges)}


def resolve_auxiliary(
    weights: object, modules: nn.ModuleList | None, reduce_group: ReduceGroup | None = None
) -> tuple[object, AuxiliaryTerms | None]:
    """(the weights for the cell loops, the aux terms or None) of a cell whose aux modules are `modules`
    (None: built without them)."""
    if modules is None:
        if isinstance(weights, AuxiliarySkip):
            raise ValueError("this supernet has no auxiliary path; build it with auxiliary='skip' or 'conv1' "
                             "to mix by AuxiliarySkip weights")
        return weights, None
    if not isinstance(weights, AuxiliarySkip) or not isinstance(weights.weights, torch.Tensor):
        raise ValueError(f"this supernet is built with an auxiliary path; its weights must be AuxiliarySkip of an "
                         f"(edges, ops) table (β may be 0), got {type(weights).__name__}")
    return weights.weights, AuxiliaryTerms(modules, weights.beta, reduce_group)
