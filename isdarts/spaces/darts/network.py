"""Evaluation networks of the DARTS space (spec §2): CIFAR (20 cells) and ImageNet mobile (14 cells).

A genotype's cell is stacked with reductions at 1/3 and 2/3 of the depth. Every node sums its two ops,
also when both read the same input (IS-DARTS's reduction cell does that). The auxiliary head sits after
the second reduction cell; the trainer owns its loss weight and sets ``drop_path_prob`` per epoch.

A sparse genotype's cell is FairDARTS's `DCOCell` (FAMILY.md "FairDARTS"): a node sums its live entries,
absent nodes are skipped, the output concatenates the present nodes only (so the next cell reads
#present * C channels), and drop path is applied to each node's sum rather than per op. Entries reading an
absent node are not built ([FD] builds them but never runs them, so its parameter count includes them).
"""

from __future__ import annotations

import torch
from torch import nn

from isdarts.spaces.common import ReLUConvBN
from isdarts.spaces.darts.genotype import DartsGenotype
from isdarts.spaces.darts.ops import FactorizedReduce, make_eval_op

__all__ = [
    "AuxiliaryHead",
    "EvalCell",
    "NetworkCIFAR",
    "NetworkImageNet",
    "count_flops_m",
    "count_parameters_m",
    "drop_path",
]


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability `drop_prob` and rescale the rest, so the expectation is kept."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class EvalCell(nn.Module):
    """One cell of a genotype: preprocess s0/s1 to C channels, compute 4 nodes, concat the chosen states
    (sparse genotype: the present nodes, each the sum of its live entries)."""

    def __init__(
        self,
        genotype: DartsGenotype,
        c_prev_prev: int,
        c_prev: int,
        c: int,
        *,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, c, affine=True, track=True)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=True, track=True)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=True, track=True)
        kind = "reduce" if reduction else "normal"
        nodes = genotype.live_nodes(kind)
        concat = genotype.cell(kind)[1]
        # Flat lists: op e reads state inputs[e]; node k sums the ops node_ops[k] (two per node unless sparse).
        self.inputs: tuple[int, ...] = tuple(j for node in nodes for _, j in node)
        self.ops = nn.ModuleList(
            make_eval_op(op, c, 2 if reduction and j < 2 else 1) for node in nodes for op, j in node
        )
        sizes = [len(node) for node in nodes]
        self.node_ops: tuple[tuple[int, ...], ...] = tuple(
            tuple(range(sum(sizes[:k]), sum(sizes[: k + 1]))) for k in range(len(nodes))
        )
        self.num_nodes = len(nodes)
        self.sparse = genotype.sparse
        self.concat: tuple[int, ...] = tuple(concat)
        self.multiplier = len(concat)
        # Drop path would turn an identity into noise on the residual path, so DARTS exempts it.
        self._droppable = tuple(not isinstance(op, nn.Identity) for op in self.ops)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states: list[torch.Tensor | None] = [self.preprocess0(s0), self.preprocess1(s1)]
        apply_drop = self.training and drop_prob > 0.0
        for ops in self.node_ops:
            total: torch.Tensor | None = None
            for e in ops:
                h = self.ops[e](states[self.inputs[e]])
                if apply_drop and not self.sparse and self._droppable[e]:
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            if apply_drop and self.sparse and total is not None:
                total = drop_path(total, drop_prob)  # FairDARTS drops a node's sum, identities included
            states.append(total)  # None: an absent node of a sparse cell, never read
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier on the map after the second reduction cell (8x8 on CIFAR, 7x7 on ImageNet).

    CIFAR pools with stride 3 and normalises after the 2x2 conv; DARTS trained its ImageNet head with
    stride 2 and without that BN (a typo it kept for consistency), and we follow it.
    """

    def __init__(self, c: int, num_classes: int, *, stride: int, final_bn: bool) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            *([nn.BatchNorm2d(768)] if final_bn else []),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class _CellStack(nn.Module):
    """Cells with reductions at layers//3 and 2*layers//3, the auxiliary head after the second one."""

    def _build_cells(self, genotype: DartsGenotype, c: int, layers: int, c_stem: int, *, reduction_prev: bool) -> int:
        self.drop_path_prob = 0.0
        self.aux_index = 2 * layers // 3
        self.cells = nn.ModuleList()
        c_prev_prev, c_prev, c_curr = c_stem, c_stem, c
        self.aux_channels = 0
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = EvalCell(genotype, c_prev_prev, c_prev, c_curr, reduction=reduction, reduction_prev=reduction_prev)
            self.cells.append(cell)
            c_prev_prev, c_prev, reduction_prev = c_prev, cell.multiplier * c_curr, reduction
            if i == self.aux_index:
                self.aux_channels = c_prev
        return c_prev

    def _run_cells(self, s0: torch.Tensor, s1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        return s1, logits_aux


class NetworkCIFAR(_CellStack):
    """DARTS CIFAR evaluation network; forward returns ``(logits, logits_aux)``, aux None unless training.

    Set ``model.drop_path_prob`` before each epoch (the spec ramps it linearly to 0.2).
    """

    def __init__(
        self,
        genotype: DartsGenotype,
        *,
        C: int = 36,
        num_classes: int = 10,
        layers: int = 20,
        auxiliary: bool = True,
        drop_path_prob: float = 0.0,
        stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        c_prev = self._build_cells(genotype, C, layers, c_stem, reduction_prev=False)
        self.drop_path_prob = drop_path_prob
        self.auxiliary_head = (
            AuxiliaryHead(self.aux_channels, num_classes, stride=3, final_bn=True) if auxiliary else None
        )
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = self.stem(x)
        out, logits_aux = self._run_cells(s, s)
        return self.classifier(self.global_pooling(out).flatten(1)), logits_aux


class NetworkImageNet(_CellStack):
    """DARTS ImageNet mobile network (stems reduce 224 -> 28); forward returns ``(logits, logits_aux)``."""

    def __init__(
        self,
        genotype: DartsGenotype,
        *,
        C: int = 48,
        num_classes: int = 1000,
        layers: int = 14,
        auxiliary: bool = True,
        drop_path_prob: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        # stem1 halves the resolution, so the first cell's s0 (from stem0) is factorized-reduced.
        c_prev = self._build_cells(genotype, C, layers, C, reduction_prev=True)
        self.drop_path_prob = drop_path_prob
        self.auxiliary_head = (
            AuxiliaryHead(self.aux_channels, num_classes, stride=2, final_bn=False) if auxiliary else None
        )
        # Equal to the spec's AvgPool(7) at 224x224; adaptive so smaller test inputs work too.
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        out, logits_aux = self._run_cells(s0, s1)
        return self.classifier(self.global_pooling(out).flatten(1)), logits_aux


def count_parameters_m(model: nn.Module, exclude_auxiliary: bool = True) -> float:
    """Parameters in millions; the papers leave the auxiliary head out of the count."""
    return (
        sum(p.numel() for name, p in model.named_parameters() if not (exclude_auxiliary and "auxiliary" in name)) / 1e6
    )


@torch.no_grad()
def count_flops_m(model: nn.Module, input_size: int | tuple[int, int] = 32) -> float:
    """Multiply-adds (the papers' "FLOPs") of one RGB image, in millions: convs and linear layers only.

    Runs one batch-1 forward in eval mode, so the auxiliary head and drop path are left out, as reported.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += out.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        model(torch.zeros(1, 3, h, w, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total / 1e6
