"""Partial-channel mixing (PC-DARTS, FAMILY.md "PC-DARTS"): a strategy a method passes as a kind's `weights`.

On an edge with input h (B, C, H, W) only the first C/K channels (a fixed slice, never a random one) go
through the edge's candidate ops, mixed by the (edges, ops) weights as DARTS mixes them; the other channels
bypass the ops unchanged (max-pooled 2x2, stride 2, on stride-2 edges). The edge's output is
shuffle_K(concat[mixed ops, bypass]), or with `shift` the concat rotated by C/K. With edge normalisation a
node sums its incoming edges weighted by `edge_weights` b (per node a softmax of the method's β over the
node's incoming edges, see `normalise_edges`); without it, a plain sum. The supernet must be built with
its ops at C/K channels (`partial_channels=K`). The cell loops that run this are in isdarts.spaces.common.

A leaf module (torch only), so the cell loops and the methods both import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: view (B, g, C/g, H, W), swap dims 1 and 2, flatten; out[c] =
    in[(c mod g)·(C/g) + ⌊c/g⌋]. The identity for g = 1. Keeps a channels-last input channels-last."""
    if groups == 1:
        return x
    b, c, h, w = x.shape
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w).contiguous(memory_format=fmt)


def channel_shift(x: torch.Tensor, part: int) -> torch.Tensor:
    """The concat rotated by `part` channels: cat(x[:, part:], x[:, :part]) (PC-DARTS's commented-out variant)."""
    return torch.cat([x[:, part:], x[:, :part]], dim=1)


def edge_nodes(edges: Sequence[str]) -> list[list[int]]:
    """The edge indices entering each node, nodes in first-seen order, from edge names "i<-j"."""
    nodes: dict[str, list[int]] = {}
    for e, name in enumerate(edges):
        nodes.setdefault(name.split("<-")[0], []).append(e)
    return list(nodes.values())


def normalise_edges(beta: torch.Tensor, edges: Sequence[str], *, log: bool = False) -> torch.Tensor:
    """b: per node, the softmax of β over the node's incoming edges; (edges,) like β. A node with one input
    edge gets weight exactly 1. With `log`, log b (a log-softmax: no underflow to 0 for very unequal β)."""
    b = torch.empty_like(beta)
    normalise = torch.log_softmax if log else torch.softmax
    for node in edge_nodes(edges):
        b[node] = normalise(beta[node], dim=0)
    return b


@dataclass(frozen=True)
class PartialChannels:
    """Run each edge's ops on the first C/`k` channels of its input (see the module docstring).

    `weights` (edges, ops) mix the ops; `edge_weights` (edges,) scale each edge's output in its node's sum
    (None: a plain sum); `shift` rotates instead of shuffling.
    """

    weights: torch.Tensor
    k: int
    edge_weights: torch.Tensor | None = None
    shift: bool = False

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"partial channels need K >= 1, got {self.k}")

    @property
    def plain(self) -> bool:
        """Whether this is exactly DARTS's mixing: every channel through the ops (K=1; the shuffle and the
        shift are then the identity) and a plain node sum. The cells then run the (edges, ops) table path."""
        return self.k == 1 and self.edge_weights is None

    def op_part(self, h: torch.Tensor) -> torch.Tensor:
        """The channels the ops see: the first C/K (a view)."""
        return h[:, : h.shape[1] // self.k]

    def combine(self, mixed: torch.Tensor | None, h: torch.Tensor, stride: int) -> torch.Tensor:
        """The edge's output from its mixed ops' output (None: no op computed, i.e. zeros) and its input h."""
        if stride not in (1, 2):
            raise ValueError(f"partial channels support stride 1 and 2, got {stride}")
        if self.k == 1:  # no bypass; the shuffle and the shift are the identity
            return torch.zeros_like(h[:, :, ::stride, ::stride]) if mixed is None else mixed
        part = h.shape[1] // self.k
        bypass = h[:, part:] if stride == 1 else F.max_pool2d(h[:, part:], 2, 2)
        if mixed is None:
            mixed = bypass.new_zeros((bypass.shape[0], part, *bypass.shape[2:]))
        y = torch.cat([mixed, bypass], dim=1)
        return channel_shift(y, part) if self.shift else channel_shuffle(y, self.k)

    def edge_term(self, y: torch.Tensor, edge: int) -> torch.Tensor:
        """The edge's term in its node's sum."""
        return y if self.edge_weights is None else y * self.edge_weights[edge]
