"""The NAS-Bench-201 candidate operations and the macro network's fixed blocks (spec §1)."""

from __future__ import annotations

import torch
from torch import nn

from isdarts.spaces.common import ReLUConvBN, Zero
from isdarts.spaces.nb201.genotype import NB201_OPS


class ResNetBasicBlock(nn.Module):
    """The reduction block between NB201 stages: two ReLUConvBN 3x3 plus an avg-pool + 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1, affine=True, track=True)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine=True, track=True)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


def make_nb201_op(name: str, channels: int, *, affine: bool, track: bool) -> nn.Module:
    """Build one candidate op by its benchmark name; inside cells stride is 1 and C_in == C_out."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0, affine=affine, track=track)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1, affine=affine, track=track)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NB201 op {name!r}; known ops: {', '.join(NB201_OPS)}")
