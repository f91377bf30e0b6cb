"""Candidate operations of the DARTS (NASNet-like) space (spec §2) and of its RobustDARTS variants, for search
and for evaluation.

Search and evaluation build the same modules; they differ only in the BN settings (search cells use
``affine=False, track_running_stats=False``) and in the names: the search side uses the AutoDL names
(``dua_sepc_3x3``), genotypes and the evaluation network the DARTS names (``sep_conv_3x3``).
As in AutoDL, a conv directly followed by BN carries a bias exactly when the BN is not affine, so the
evaluation ops (affine BN, bias-free convs) have the DARTS parameter counts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from isdarts.spaces.common import Zero

__all__ = [
    "DARTS_EVAL_OPS",
    "DARTS_SEARCH_OPS",
    "SEARCH_TO_EVAL",
    "KNOWN_SEARCH_OPS",
    "DilConv",
    "FactorizedReduce",
    "NoiseOp",
    "SepConv",
    "make_darts_op",
    "make_eval_op",
    "make_search_op",
    "search_name",
]

# Index order matters: mask columns follow it (ALGORITHMS.md §2).
DARTS_SEARCH_OPS: tuple[str, ...] = (
    "none",
    "skip_connect",
    "dua_sepc_3x3",
    "dua_sepc_5x5",
    "dil_sepc_3x3",
    "dil_sepc_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
)
# Every op a DARTS-like space may list: the DARTS space's 8 and RobustDARTS's `noise` (space S4).
KNOWN_SEARCH_OPS: tuple[str, ...] = (*DARTS_SEARCH_OPS, "noise")
SEARCH_TO_EVAL: dict[str, str] = {
    "none": "none",
    "skip_connect": "skip_connect",
    "dua_sepc_3x3": "sep_conv_3x3",
    "dua_sepc_5x5": "sep_conv_5x5",
    "dil_sepc_3x3": "dil_conv_3x3",
    "dil_sepc_5x5": "dil_conv_5x5",
    "avg_pool_3x3": "avg_pool_3x3",
    "max_pool_3x3": "max_pool_3x3",
    "noise": "noise",
}
DARTS_EVAL_OPS: tuple[str, ...] = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
    "skip_connect",
    "none",
    "noise",
)
_EVAL_TO_SEARCH = {v: k for k, v in SEARCH_TO_EVAL.items()}


def search_name(name: str) -> str:
    """An op's search name, given either name (`sep_conv_3x3` -> `dua_sepc_3x3`)."""
    return _EVAL_TO_SEARCH.get(name, name)


class DilConv(nn.Sequential):
    """ReLU -> depthwise k x k (stride, dilation) -> pointwise 1x1 -> BN: one separable unit.

    With dilation 2 this is the `dil_conv` op; AutoDL calls the same unit `SepConv`.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        dilation: int,
        *,
        affine: bool,
        track: bool,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, padding=0, bias=not affine),
            nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track),
        )


class SepConv(nn.Sequential):
    """Two stacked separable units, only the first strided: DARTS's `sep_conv` (AutoDL `DualSepConv`)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, *, affine: bool, track: bool
    ) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine=affine, track=track),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine=affine, track=track),
        )


class FactorizedReduce(nn.Module):
    """Stride-2 "skip": ReLU, two strided 1x1 convs (the second shifted by one pixel), concat, BN.

    The input is zero-padded on the bottom/right before the shift, so odd sizes halve like a stride-2 conv.
    """

    def __init__(self, c_in: int, c_out: int, *, affine: bool, track: bool) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=not affine)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=not affine)
        self.bn = nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class NoiseOp(nn.Module):
    """RobustDARTS's `noise` op (space S4): standard Gaussian noise of the (strided) input's shape, independent
    of the input's values, so it passes no gradient to its input (only to its mixing weight).

    A search cell may hand it noise drawn ahead (`pending`): the cell draws every live noise op's output in edge
    order before mixing, so the fused and the per-op loops use the same numbers.
    """

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.pending: torch.Tensor | None = None

    def draw(self, x: torch.Tensor) -> torch.Tensor:
        """Fresh noise of this op's output shape for input x."""
        like = x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]
        return torch.randn(like.shape, dtype=like.dtype, device=like.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pending is not None:
            out, self.pending = self.pending, None
            return out
        return self.draw(x)


def make_darts_op(name: str, channels: int, stride: int, *, affine: bool, track: bool) -> nn.Module:
    """Build one op by its search or evaluation name; C_in == C_out == `channels` inside cells."""
    op = search_name(name)
    c = channels
    if op == "none":
        return Zero(stride)
    if op == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine, track=track)
    if op == "dua_sepc_3x3":
        return SepConv(c, c, 3, stride, 1, affine=affine, track=track)
    if op == "dua_sepc_5x5":
        return SepConv(c, c, 5, stride, 2, affine=affine, track=track)
    if op == "dil_sepc_3x3":
        return DilConv(c, c, 3, stride, 2, 2, affine=affine, track=track)
    if op == "dil_sepc_5x5":
        return DilConv(c, c, 5, stride, 4, 2, affine=affine, track=track)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if op == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if op == "noise":
        return NoiseOp(stride)
    raise ValueError(
        f"unknown DARTS op {name!r}; search ops: {', '.join(KNOWN_SEARCH_OPS)}; "
        f"evaluation ops: {', '.join(DARTS_EVAL_OPS)}"
    )


def make_search_op(name: str, channels: int, stride: int, *, affine: bool = False, track: bool = False) -> nn.Module:
    """A search-cell op (IS-DARTS default: BN without affine and without running stats)."""
    return make_darts_op(name, channels, stride, affine=affine, track=track)


def make_eval_op(name: str, channels: int, stride: int) -> nn.Module:
    """An evaluation-network op by its DARTS name (affine BN with running stats)."""
    if name not in DARTS_EVAL_OPS:
        raise ValueError(f"unknown evaluation op {name!r}; known: {', '.join(DARTS_EVAL_OPS)}")
    return make_darts_op(name, channels, stride, affine=True, track=True)
