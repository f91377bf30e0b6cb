"""Running many candidate ops as one: the building blocks of the fused cells of both spaces.

Every candidate op on the edges that leave one cell state reads the same tensor, and ops of one kind share
their shapes, so k such ops are one convolution whose weight is the k weights concatenated (a shared input)
or one grouped convolution (k inputs stacked along channels), followed by one batch norm over the k*C
channels. The per-op modules stay the owners of the parameters: the fused weights are built from them on
every call, so state dicts, optimizers and weight decay see exactly the unfused network, and gradients
flow back to each op's own tensors through the concatenation.

Stacked tensors are edge-major: channels [e0: 0..C), [e1: C..2C), ... for the k ops in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _cat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(list(tensors))


def conv_shared(x: torch.Tensor, convs: Sequence[nn.Conv2d]) -> torch.Tensor:
    """k ungrouped convs of one shared input as one conv: (B, Cin, H, W) -> (B, k*Cout, H', W')."""
    first = convs[0]
    bias = None if first.bias is None else _cat([c.bias for c in convs])
    return F.conv2d(x, _cat([c.weight for c in convs]), bias, first.stride, first.padding, first.dilation, first.groups)


def conv_stacked(x: torch.Tensor, convs: Sequence[nn.Conv2d]) -> torch.Tensor:
    """k convs, conv i on channel block i of x: (B, k*Cin, H, W) -> (B, k*Cout, H', W'), as one grouped conv."""
    first = convs[0]
    bias = None if first.bias is None else _cat([c.bias for c in convs])
    weight, groups = _cat([c.weight for c in convs]), first.groups * len(convs)
    if first.dilation == (2, 2) and bias is None and first.padding == (first.kernel_size[0] - 1,) * 2:
        return _dilated_depthwise(x, weight, first.stride[0], groups)
    return F.conv2d(x, weight, bias, first.stride, first.padding, first.dilation, groups)


def _dilated_depthwise(x: torch.Tensor, weight: torch.Tensor, stride: int, groups: int) -> torch.Tensor:
    """A dilation-2 "same" conv as an undilated one on the four pixel-parity sub-images (space-to-batch).

    With dilation 2 and even padding, output pixel (y, x) reads only input pixels of its own row and column
    parity, so each parity sub-image is an ordinary conv with padding k//2: the same products and sums,
    and oneDNN's undilated depthwise kernels are several times faster than its dilated ones. Stride 2
    reads only the even sub-image.
    """
    k = weight.shape[-1]
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    if stride == 2:
        return F.conv2d(x[:, :, ::2, ::2].contiguous(memory_format=fmt), weight, None, 1, k // 2, 1, groups)
    b, c, h, w = x.shape
    if stride != 1 or h % 2 or w % 2:
        return F.conv2d(x, weight, None, stride, k - 1, 2, groups)
    parts = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(4 * b, c, h // 2, w // 2)
    y = F.conv2d(parts.contiguous(memory_format=fmt), weight, None, 1, k // 2, 1, groups)
    y = y.reshape(b, 2, 2, c, h // 2, w // 2).permute(0, 3, 4, 1, 5, 2).reshape(b, c, h, w)
    return y.contiguous(memory_format=fmt)


def batch_norm_stacked(y: torch.Tensor, bns: Sequence[nn.BatchNorm2d]) -> torch.Tensor:
    """k batch norms over their channel blocks of y, as one: statistics are per channel, so this is exact.

    Only BNs without running statistics can be fused (the search cells' setting): they always normalise
    with the batch statistics, in training and in eval mode alike.
    """
    first = bns[0]
    weight = _cat([bn.weight for bn in bns]) if first.affine else None
    bias = _cat([bn.bias for bn in bns]) if first.affine else None
    return F.batch_norm(y, None, None, weight, bias, True, 0.0, first.eps)


def repeat_blocks(x: torch.Tensor, k: int) -> torch.Tensor:
    """x (B, C, H, W) stacked k times edge-major, the input of k grouped convs that all read x."""
    # cat, not repeat: it keeps a channels-last input channels-last, which the depthwise convs need to be fast.
    return x if k == 1 else torch.cat([x] * k, dim=1)


def split_blocks(y: torch.Tensor, k: int) -> torch.Tensor:
    """A stacked (B, k*C, H, W) tensor as (B, k, C, H, W): a view, no copy."""
    b, kc, h, w = y.shape
    return y.view(b, k, kc // k, h, w)


def avg_pool_3x3(x: torch.Tensor, stride: int) -> torch.Tensor:
    """`nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)` as a depthwise sum and a divide.

    The same numbers (a sum of the same 9 values, over the same count), at a fraction of the time of
    PyTorch's CPU average pool forward and backward: the sum runs as a convolution, whose kernels are
    the fast ones, and the count of in-image pixels per output is a constant map.
    """
    channels, (h, w) = x.shape[1], x.shape[-2:]
    counts = _in_image(h, x)[::stride, None] * _in_image(w, x)[None, ::stride]
    return F.conv2d(x, x.new_ones(channels, 1, 3, 3), None, stride, 1, 1, channels) / counts


def _in_image(size: int, like: torch.Tensor) -> torch.Tensor:
    """Per position along one axis, how many of the 3 window taps fall inside the image (2 at the borders)."""
    taps = like.new_full((size,), 3.0)
    taps[0] -= 1
    taps[-1] -= 1
    return taps
