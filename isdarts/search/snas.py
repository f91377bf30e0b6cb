"""SNAS (Xie et al., ICLR 2019; FAMILY.md "Sampling: SNAS"; official code SNAS-Series `SNAS/train_search.py
--snas`, `SNAS/model_search.py`): soft concrete samples of the cell, weights and α trained on one loss.

Each training forward draws, per cell kind, one Gumbel-softmax sample Z = softmax((α + g)/τ), g = -log(-log u),
shared by all cells of the kind; every op runs, weighted by Z (no straight-through, no argmax). One backward of
CE (+ the resource penalty) on one training batch fills the gradients of the weights and of α; the weights'
gradient is clipped to `grad_clip`, α's to `arch_clip`, and both optimisers step (single level: no valid half).
τ_e = τ_min + (τ_max - τ_min)(1 - (e+1)/T), floored at τ_min, with T = `tau_epochs` (the official code hard-codes
150 and steps its scheduler once before epoch 0, hence e+1; 0 here means the search's epochs). The learning rate
is the per-epoch cosine at e + `lr_epoch_offset` (the official scheduler is also stepped before each epoch).

Drop-path (`drop_path`, official 0.3 on the DARTS space): during training every edge output of every cell is
multiplied by a per-image Bernoulli(1-p) mask and divided by 1-p. The edge output is linear in Z, so this is
passed to the supernet as per-cell weights of shape (edges, ops, batch, 1, 1, 1), Z·mask/(1-p), which the
cell loops broadcast over each op's (batch, C, H, W) output: no new mixing strategy is needed.

Resource penalty (`resource_lambda` > 0; official DARTS-space command: 1.5e-3, log penalty, reparametrization):
per cell and edge R_e = [log c(Σ_o size_o Z_o) + log c(Σ_o flops_o Z_o) + log c(Σ_o mac_o Z_o)] / 3 with
c(v) = v if |v| >= 1 else 1, the per-op size/flops/mac of SNAS's operations.py at the cell's channels,
resolution and the edge's stride; the penalty is λ·Σ_kinds (Σ_cells Σ_e R_e)/(the kind's cell count), which is
the official normal/6 + reduce/2 at its 8 cells. Its gradient reaches α through Z.

Where the spec leaves a choice: α is N(1, 0.01) (official `loc_mean`, `loc_std`); the α optimiser is Adam
(`arch_optim`, the official distributed path and the paper) or the single-GPU path's plain SGD; evaluation mixes
by the noise-free relaxation softmax(α/τ); unsampled-weight semantics follow the official code's zeroed (not
freed) gradients, so weight decay and momentum reach every weight each step. The genotype (`derive`) is the
paper's `edge_all` cell (every edge keeps its argmax op, `none` included; `none` edges dropped, so a DARTS-space
node keeps any number of inputs: a sparse genotype) or `top2_no_none`, the space's DARTS derivation (top 2
non-`none` inputs per node, for the fixed-width evaluation network); on NB201 both are the argmax per edge.

`SingleLevel` is the machinery SNAS shares with DSNAS (isdarts.search.dsnas): one training batch per step, α
and the weights stepped on the same backward, its own α optimiser settings (`arch_*` options: the loop's
`arch` group belongs to bi-level methods) and sampling generator.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from isdarts.config.search import ArchConfig, SearchConfig
from isdarts.errors import ConfigError
from isdarts.search.base import cosine_lr, set_lr
from isdarts.search.darts import Darts
from isdarts.search.trajectory import op_weights
from isdarts.spaces.darts.genotype import DartsGenotype
from isdarts.spaces.space import Genotype, Space

# The official α init N(loc_mean, loc_std). Only Adam's L2 term sees the mean (softmax ignores shifts).
ALPHA_MEAN, ALPHA_STD = 1.0, 0.01
# `data` choices: the weights' (and α's) training images.
DATA_SHARES = {"full_train": None, "train_half": 0.5}


def tau_at(epoch: int, tau_max: float, tau_min: float, tau_epochs: int) -> float:
    """The official linear τ of 0-based `epoch`: τ_min + (τ_max - τ_min)(1 - (epoch+1)/tau_epochs), floored."""
    return max(tau_min, tau_min + (tau_max - tau_min) * (1 - (epoch + 1) / tau_epochs))


def gumbel_softmax(alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """One soft concrete sample softmax((α + g)/τ) per row, g = -log(-log u) from `generator` (CPU), on
    α's device with α's gradient. u = 0 (g = -inf) is redrawn, so every entry is strictly positive."""
    while True:
        u = torch.rand(alpha.shape, dtype=alpha.dtype, generator=generator)
        if bool((u > 0).all()):
            break
    gumbel = -(-u.log()).log()
    return torch.softmax((alpha + gumbel.to(alpha.device)) / tau, dim=-1)


def drop_path_weights(
    z: torch.Tensor, cells: int, batch: int, drop: float, generator: torch.Generator
) -> list[torch.Tensor]:
    """Per cell, Z times an independent per-(edge, image) Bernoulli(1-drop) mask / (1-drop), shaped
    (edges, ops, batch, 1, 1, 1) so that weights[e, o] broadcasts over op o's (batch, C, H, W) output."""
    keep = 1.0 - drop
    masks = torch.bernoulli(torch.full((cells, z.shape[0], batch), keep, dtype=z.dtype), generator=generator)
    masks = (masks / keep).to(z.device)
    return [z[:, :, None, None, None, None] * m[:, None, :, None, None, None] for m in masks]


# ---------------------------------------------------------------- resource penalty
def op_cost(name: str, c: int, y: int, stride: int) -> tuple[float, float, float]:
    """(size, flops, mac) of op `name` on an edge of `c` channels, output resolution y x y and `stride`, as
    SNAS's operations.py counts them (NB201's ReLU-conv-BN ops as its ReLUConvBN)."""
    kernel = re.search(r"_(\d+)x\1$", name)
    k = int(kernel.group(1)) if kernel else 0
    area = y * y
    if name == "none":
        return 0.0, 0.0, 0.0
    if name == "noise":  # RobustDARTS's S4 (SNAS never had it; ours): no weights, no products, one output write
        return 0.0, 0.0, float(area * c)
    if name == "skip_connect":
        if stride == 1:
            return 0.0, 0.0, 2.0 * c * area
        size = 2 * c * (c // 2)  # FactorizedReduce: two 1x1 convs to c/2 channels each
        return size, size * area, 2.0 * area * (4 * c + c // 2) + size
    if "pool" in name:
        return 0.0, 9.0 * area * c, (2.0 if stride == 1 else 5.0) * area * c
    if name.startswith(("sep_conv", "dua_sepc")) and k:
        size = 2 * c * k * k + 2 * c * c
        return size, size * area, area * ((7 if stride == 1 else 10) * c + c) + size
    if name.startswith(("dil_conv", "dil_sepc")) and k:
        size = c * k * k + c * c
        return size, size * area, area * ((3 if stride == 1 else 6) * c + c) + size
    if name.startswith("nor_conv") and k:
        size = c * c * k * k
        return size, size * area, area * ((1 if stride == 1 else 4) * c + c) + size
    raise ValueError(f"SNAS's resource penalty has no cost model for op {name!r}; set resource_lambda: 0")


def search_cells(model: nn.Module, space: Space) -> list[tuple[str, nn.Module]]:
    """(kind, module) of each search cell, in forward order: the modules holding an `edges` table of
    (edges x ops) op modules; a cell's kind is its `kind` attribute (the space's only kind if it has none)."""
    cells = []
    for module in model.modules():
        edges = getattr(module, "edges", None)
        if isinstance(edges, nn.ModuleList) and len(edges) == space.num_edges and all(
            isinstance(ops, nn.ModuleList) and len(ops) == space.num_ops for ops in edges
        ):
            kind = getattr(module, "kind", None)
            if kind is None and len(space.kinds) == 1:
                kind = space.kinds[0]
            if kind not in space.kinds:
                raise ValueError(f"search cell {type(module).__name__} names no cell kind of the {space.name} space")
            cells.append((kind, module))
    return cells


def cost_tables(model: nn.Module, space: Space, image_size: int) -> dict[str, torch.Tensor]:
    """{kind: (cells, edges, ops, 3) size/flops/mac of every op in every cell of the kind}.

    Each cell's output resolution comes from one eval-mode forward of two blank images (hooks on the cells; no
    running statistic moves); an edge's channels and stride from its convs (every edge of both spaces has one).
    """
    cells = search_cells(model, space)
    sizes: dict[int, int] = {}
    hooks = [cell.register_forward_hook(lambda mod, _inp, out: sizes.__setitem__(id(mod), out.shape[-1]))
             for _, cell in cells]
    ref = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            uniform = torch.full((space.num_edges, space.num_ops), 1.0 / space.num_ops, device=ref.device)
            blank = torch.zeros(2, 3, image_size, image_size, device=ref.device)
            model(blank, weights={kind: uniform for kind in space.kinds})
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    tables: dict[str, list[torch.Tensor]] = {kind: [] for kind in space.kinds}
    for kind, cell in cells:
        rows = []
        for e, edge in enumerate(cell.edges):
            convs = [m for op in edge for m in op.modules() if isinstance(m, nn.Conv2d)]
            if convs:
                c, stride = convs[0].in_channels, max(conv.stride[0] for conv in convs)
            else:  # an edge of pools and identities only (RobustDARTS's S1): the cell knows its width and strides
                c, stride = cell.channels // cell.partial_channels, cell.strides[e]
            rows.append([op_cost(name, c, sizes[id(cell)], stride) for name in space.op_table(kind)[e]])
        tables[kind].append(torch.tensor(rows, dtype=torch.float64))
    return {kind: torch.stack(t).to(ref.device, torch.float32) for kind, t in tables.items()}


def log_resource(z: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
    """Σ over cells and edges of R_e = mean over (size, flops, mac) of log c(Σ_o cost_o Z_o), c(v) = v if |v| >= 1
    else 1; z (edges, ops), costs (cells, edges, ops, 3)."""
    expected = torch.einsum("eo,ceor->cer", z, costs)
    clamped = torch.where(expected.abs() >= 1, expected.abs(), torch.ones_like(expected))
    return clamped.log().mean(dim=-1).sum()


def edge_all_genotype(space: Space, weights: Mapping[str, torch.Tensor]) -> Genotype:
    """SNAS's `edge_all` cell (`genotype_edge_all`): every edge keeps its argmax op, `none` included, and the
    edges whose argmax is `none` are dropped. Where each edge is its own comparison group (NB201) that is the
    space's argmax derivation; where a node's inputs compete (the DARTS space) a node keeps any number of
    inputs: a sparse genotype (the DARTS space's genotype type has no Space-level constructor for it)."""
    if all(len({e for e, _ in group}) == 1 for group in space.subsets):
        return space.genotype_from_weights(weights)
    cells = {}
    for kind, w in weights.items():
        best = w.detach().argmax(dim=-1).tolist()
        names = space.op_table(kind)
        cells[kind] = [
            [(names[e][best[e]], int(space.edges[e].rpartition("<-")[2])) for e in dict.fromkeys(e for e, _ in group)
             if names[e][best[e]] != "none"]
            for group in space.subsets
        ]
    return DartsGenotype.sparse_cells(**cells)


# ---------------------------------------------------------------- single-level machinery
class SingleLevel(Darts):
    """α methods whose weights and α train on the same batch and the same backward (SNAS, DSNAS).

    Subclasses fill the grads in `backward(x, y)` and say what evaluation mixes by (`forward_weights`). For the
    loop: `train_share(cfg)` says which training images to train on (the `data` option) and `graph_safe` that a
    step must stay eager; `end_epoch` adds the softmax(α) table and α-step count the loop records for bi-level
    methods only (its keys override the loop's).
    """

    bilevel = False
    # Every step samples on the host and steps Adam: never replay `train_step` as a CUDA graph.
    graph_safe: ClassVar[bool] = False

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        name = type(self).__name__
        beta1, beta2 = cfg.option("arch_beta1"), cfg.option("arch_beta2")
        if not (beta1 < 1 and beta2 < 1):
            raise ValueError(f"{name}: arch_beta1 and arch_beta2 must be in [0, 1), got {beta1}, {beta2}")
        arch = ArchConfig(cfg.option("arch_lr"), (beta1, beta2), cfg.option("arch_weight_decay"))
        super().__init__(model, space, dataclasses.replace(cfg, arch=arch), generator)
        if cfg.option("arch_optim") == "sgd":  # the official single-GPU path: plain SGD, no momentum, no decay
            self.a_optimizer = torch.optim.SGD(self.alphas, lr=arch.lr)
        self.arch_clip = cfg.option("arch_clip")
        self.derive = cfg.option("derive")
        self.lr_epoch_offset = int(cfg.option("lr_epoch_offset"))
        if self.lr_epoch_offset not in (0, 1):
            raise ValueError(f"{name}: lr_epoch_offset must be 0 or 1, got {self.lr_epoch_offset}")
        with torch.no_grad():  # the base drew 1e-3·N(0, 1): rescale the same draw to N(1, 0.01)
            for alpha in self.alphas:
                alpha.mul_(ALPHA_STD / 1e-3).add_(ALPHA_MEAN)
        # The samples' own stream, seeded from the α draw's generator and saved with checkpoints.
        seed = int(torch.randint(0, 2**62, (), generator=generator)) if generator is not None else 0
        self.sampler = torch.Generator().manual_seed(seed)
        self.alpha_steps = 0
        # Zeroed, not freed, gradients from the start (the official code allocates them at init): every step's
        # weight decay and momentum then reach all weights, also those of ops a sample leaves out.
        for weight in self.weights:
            weight.grad = torch.zeros_like(weight)

    @classmethod
    def train_share(cls, cfg: SearchConfig) -> float | None:
        """The share of the training set this search trains on (`data`): None for all of it, 0.5 for the
        bi-level methods' weight half (the loop's fixed split)."""
        return DATA_SHARES[cfg.option("data")]

    def set_epoch(self, epoch: int) -> float:
        return set_lr(self.w_optimizer, cosine_lr(epoch + self.lr_epoch_offset, self.epochs, self.lr, self.lr_min))

    def backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill the weights' and α's .grad from one training batch; returns (CE loss, logits)."""
        raise NotImplementedError

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """One step: one backward, clips, SGD on the weights and the α step; (detached loss, correct count)."""
        if x.is_cuda and torch.cuda.is_current_stream_capturing():
            raise ConfigError(
                f"{type(self).__name__} samples its path on the host every step and cannot be replayed as a CUDA "
                "graph; set cuda_graphs: false in the space's search section"
            )
        self.model.train()
        self.w_optimizer.zero_grad(set_to_none=False)
        self.a_optimizer.zero_grad(set_to_none=True)
        loss, logits = self.backward(x, y)
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.weights, self.grad_clip)
        if self.arch_clip > 0:
            nn.utils.clip_grad_norm_(self.alphas, self.arch_clip)
        self.w_optimizer.step()
        self.a_optimizer.step()
        self.alpha_steps += 1
        self.arch_changed()
        return loss.detach(), (logits.detach().argmax(1) == y).sum()

    def arch_changed(self) -> None:
        """Called after every α step and state load (DSNAS drops its cached evaluation path)."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, weights=self.forward_weights(training=False))[1]

    def end_epoch(self, epochs_done: int, iim_batches: Any) -> dict[str, Any]:
        """The base record plus what the loop records only for bi-level methods: softmax(α) and the α steps."""
        return {
            **super().end_epoch(epochs_done, iim_batches),
            "op_weights": op_weights(self.space, self.arch_weights()),
            "alpha_steps": self.alpha_steps,
        }

    def genotype(self) -> Genotype:
        """`derive` edge_all: SNAS's `edge_all` cell; top2_no_none: the space's DARTS derivation (the same cell
        on NB201; the top 2 non-`none` inputs per node on the DARTS space)."""
        if self.derive == "edge_all":
            return edge_all_genotype(self.space, self.arch_weights())
        return super().genotype()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "sampler": self.sampler.get_state(), "alpha_steps": self.alpha_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.sampler.set_state(state["sampler"])
        self.alpha_steps = int(state["alpha_steps"])
        self.arch_changed()


class Snas(SingleLevel):
    """SNAS on any space: soft Gumbel-softmax samples, annealed τ, drop-path, optional resource penalty."""

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.tau_max, self.tau_min = cfg.option("tau_max"), cfg.option("tau_min")
        if not 0 < self.tau_min <= self.tau_max:
            raise ValueError(f"Snas needs 0 < tau_min <= tau_max, got {self.tau_min}, {self.tau_max}")
        self.tau_epochs = int(cfg.option("tau_epochs")) or cfg.epochs
        self.drop_path = cfg.option("drop_path")
        if not 0 <= self.drop_path < 1:
            raise ValueError(f"Snas drop_path must be in [0, 1), got {self.drop_path}")
        self.resource_lambda = cfg.option("resource_lambda")
        self.costs = cost_tables(model, space, cfg.image_size) if self.resource_lambda > 0 else None
        self.num_cells = {kind: model.num_cells(kind) for kind in self.kinds}
        self.tau = tau_at(0, self.tau_max, self.tau_min, self.tau_epochs)
        self.add_running("resource_penalty")

    def set_epoch(self, epoch: int) -> float:
        self.tau = tau_at(epoch, self.tau_max, self.tau_min, self.tau_epochs)
        return super().set_epoch(epoch)

    def sample(self) -> dict[str, torch.Tensor]:
        """One soft sample per kind, shared by the kind's cells."""
        return {kind: gumbel_softmax(a, self.tau, self.sampler) for kind, a in self.alpha.items()}

    def resource_penalty(self, z: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """λ·Σ_kinds (Σ_cells Σ_e R_e) / cells of the kind."""
        assert self.costs is not None
        total = sum(log_resource(z[kind], self.costs[kind]) / self.num_cells[kind] for kind in self.kinds)
        return self.resource_lambda * total

    def backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.sample()
        weights: dict[str, Any] = z
        if self.drop_path > 0:
            weights = {
                kind: drop_path_weights(z[kind], self.num_cells[kind], len(y), self.drop_path, self.sampler)
                for kind in self.kinds
            }
        loss, logits = self.loss(x, y, weights)
        total = loss
        if self.costs is not None:
            penalty = self.resource_penalty(z)
            self.accumulate("resource_penalty", penalty)
            total = loss + penalty
        total.backward()
        return loss, logits

    def forward_weights(self, training: bool = True) -> dict[str, Any]:
        """Training: a fresh soft sample per kind; evaluation: the noise-free relaxation softmax(α/τ)."""
        if training:
            return self.sample()
        return {kind: torch.softmax(a / self.tau, dim=-1) for kind, a in zip(self.kinds, self.alphas, strict=True)}

    def end_epoch(self, epochs_done: int, iim_batches: Any) -> dict[str, Any]:
        penalty = self.running_means()["resource_penalty"]  # read before the base clears every running mean
        return {**super().end_epoch(epochs_done, iim_batches), "tau": self.tau, "resource_penalty": penalty}
