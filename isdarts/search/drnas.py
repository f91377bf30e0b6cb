"""DrNAS (Chen et al., ICLR 2021; FAMILY.md "Part: others.md", "## 1. DrNAS"): Dirichlet architecture sampling.

Each edge's mixing vector is a sample θ_e ~ Dir(β_e) with concentrations β = elu(α) + 1, drawn anew for every
forward (one draw per edge, shared by the kind's cells and the batch) and differentiated pathwise (implicit
reparameterisation, as torch's `Dirichlet.rsample`). Entries the mask removes are zeroed and the row is
renormalised (by the aggregation property, a draw of Dir over the kept entries). The α loss is the valid CE,
plus reg_scale·Σ_e KL(Dir(β_e) ‖ Dir(1)) with `reg_type` kl; with l2 (the default) the anchor is Adam's weight
decay = reg_scale on α instead. Official code: `xiangning-chen/DrNAS` (`DARTS-space/model_search.py`,
`201-space/search_cells.py`, `utils.py:process_step_matrix`, `prune`, `net2wider.py`, `architect.py`,
`*/train_search.py`).

With partial channels K > 1 each edge's ops see the first C/K channels and the rest bypass them, then a channel
shuffle (`isdarts.spaces.partial.PartialChannels`, without PC-DARTS's edge normalisation). α steps wait
`arch_warmup_epochs` epochs of each stage. Progressive learning (`progressive`, the DARTS-space default) runs
two stages: after `stage_epochs` epochs (0: half the search's, as D's 25 of 50 and 50 of 100) every edge
keeps its `keep_final` ops of largest α (the others are masked for good and their α set to 0), and every op
widens from C/k to C/k_final channels: the supernet is rebuilt at k_final and each widened conv copies its old
channels plus randomly chosen ones (net2wider: a conv following a depthwise conv takes that conv's output
indices as its input indices; conv biases follow their output channels), as do the SGD momentum buffers. The
cosine spans all epochs; Adam's α state is kept.

Choices where the spec leaves one, or where the harness differs from the official code:
- Sampling uses a generator of the method's own (seeded from the α generator, saved with checkpoints), so a
  resume draws exactly what an uninterrupted run draws. It calls torch's Dirichlet sampler and gradient
  (`torch._sample_dirichlet`, `torch._dirichlet_grad`), the kernels of `Dirichlet.rsample`, which itself only
  takes the global RNG.
- Evaluation (test accuracy per epoch) mixes by the Dirichlet mean β/Σβ (masked, renormalised), not a sample:
  deterministic, and replayable as a CUDA graph. The official `infer` samples.
- The ops sampled over: `include_none` false (the DARTS-space default) masks `none` out for the whole search,
  as D's 7-op DARTS space; the Dirichlet and the KL term then run over the other ops only.
- `arch.weight_decay` is not used: as in D's Architect, Adam's weight decay is reg_scale (l2) or 0 (kl).
- The α step comes first in each step (`step_order`); the weight step's clip counts α where the space's
  reference code does (NB201: α is a network parameter in D's 201-space code).
- The op BNs of the harness's search cells hold no state (affine=False, no running statistics), so widening
  touches convs only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Dirichlet, kl_divergence

from isdarts.config.search import SearchConfig
from isdarts.search.base import Batches
from isdarts.search.darts import Darts, exclude_ops, masked_softmax
from isdarts.search.speed import apply_speed, resolve_speed
from isdarts.spaces.partial import PartialChannels
from isdarts.spaces.space import Space

REG_TYPES = ("l2", "kl")
Transform = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------- the Dirichlet
def concentration(alpha: torch.Tensor) -> torch.Tensor:
    """β = elu(α) + 1 > 0 (β = 1 at α = 0)."""
    return F.elu(alpha) + 1


class _DirichletSample(torch.autograd.Function):
    """A pathwise-differentiable Dirichlet draw from a given generator (torch's `_Dirichlet`, which has none)."""

    @staticmethod
    def forward(ctx: Any, conc: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x = torch._sample_dirichlet(conc, generator=generator)
        ctx.save_for_backward(x, conc)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, conc = ctx.saved_tensors
        total = conc.sum(-1, keepdim=True).expand_as(conc)
        # d x_i / d conc_j by implicit reparameterisation, contracted with the gradient projected onto the simplex.
        return torch._dirichlet_grad(x, conc, total) * (grad - (x * grad).sum(-1, keepdim=True)), None


def dirichlet_rsample(conc: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw of Dir(conc_row) per row of `conc`, differentiable in conc."""
    return _DirichletSample.apply(conc, generator)


def renormalise(theta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked entries exactly 0, each row rescaled to sum 1 (a row with nothing left stays all 0)."""
    kept = theta * mask.to(theta.dtype)
    return kept / kept.sum(-1, keepdim=True).clamp_min(torch.finfo(theta.dtype).tiny)


def kl_to_uniform(conc: torch.Tensor) -> torch.Tensor:
    """Σ over rows of KL(Dir(conc_row) ‖ Dir(1, ..., 1))."""
    return kl_divergence(
        Dirichlet(conc, validate_args=False), Dirichlet(torch.ones_like(conc), validate_args=False)
    ).sum()


# ---------------------------------------------------------------- progressive learning
def prune_rows(alpha: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
    """D's `prune`: per row keep the `keep` alive entries of largest α (a masked entry is never revived), set
    every other α to 0 in place; returns the new 0/1 mask."""
    alive = (mask > 0.5).sum(-1)
    if bool((alive < keep).any()):
        raise ValueError(f"cannot keep {keep} ops on an edge with only {int(alive.min())} alive")
    with torch.no_grad():
        kept = alpha.masked_fill(mask <= 0.5, float("-inf")).topk(keep, dim=-1).indices
        new_mask = torch.zeros_like(mask).scatter(1, kept, 1.0)
        alpha.copy_(torch.where(new_mask > 0.5, alpha, torch.zeros_like(alpha)))
    return new_mask


def _extend(dim: int, index: torch.Tensor) -> Transform:
    """t -> t with the slices `index` along `dim` appended (net2wider's copy of random channels)."""
    return lambda t: torch.cat([t, t.index_select(dim, index.to(t.device))], dim=dim)


def _then(first: Transform | None, second: Transform | None) -> Transform | None:
    if first is None or second is None:
        return first or second
    return lambda t: second(first(t))


def widening_transforms(old: nn.Module, new: nn.Module, generator: torch.Generator) -> dict[str, Transform]:
    """Per parameter name of `new`, how the `old` tensor of that name (or its momentum buffer) widens into it.

    `new` is `old`'s architecture with wider convs. Each widened conv gets its new output channels as copies of
    random old ones (its bias follows); its new input channels are copies too, with the indices of the
    depthwise conv it follows if it follows one (a separable unit's pointwise conv), random ones otherwise.
    """
    transforms: dict[str, Transform] = {}
    chain: torch.Tensor | None = None  # the output indices of the depthwise conv just widened

    def draw(old_size: int, new_size: int) -> torch.Tensor:
        return torch.randint(0, old_size, (new_size - old_size,), generator=generator, device=generator.device)

    old_modules = dict(old.named_modules())
    for name, module in new.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        before = old_modules[name]
        w_old, w_new = before.weight.shape, module.weight.shape
        depthwise = module.groups > 1 and module.groups == module.in_channels
        if w_old == w_new:
            chain = None
            continue
        if w_new[0] < w_old[0] or w_new[1] < w_old[1]:
            raise ValueError(f"cannot narrow {name} from {tuple(w_old)} to {tuple(w_new)}")
        into = None
        if w_new[1] != w_old[1]:
            index = chain if chain is not None and len(chain) == w_new[1] - w_old[1] else draw(w_old[1], w_new[1])
            into = _extend(1, index)
        out_index = draw(w_old[0], w_new[0]) if w_new[0] != w_old[0] else None
        out = None if out_index is None else _extend(0, out_index)
        transforms[f"{name}.weight"] = _then(into, out) or (lambda t: t)
        if module.bias is not None and out is not None:
            transforms[f"{name}.bias"] = out
        chain = out_index if depthwise else None
    return transforms


def widened_state(old: nn.Module, new: nn.Module, transforms: dict[str, Transform]) -> dict[str, torch.Tensor]:
    """`new`'s state dict from `old`'s: widened where `transforms` says, copied where the shapes agree."""
    old_state, state = old.state_dict(), {}
    for name, target in new.state_dict().items():
        source = old_state[name]
        if name in transforms:
            source = transforms[name](source)
        if source.shape != target.shape:
            raise ValueError(f"cannot widen {name} from {tuple(old_state[name].shape)} to {tuple(target.shape)}")
        state[name] = source
    return state


# ---------------------------------------------------------------- the method
class DrNas(Darts):
    """DrNAS on any space: Dirichlet-sampled mixing weights, partial channels, optional progressive stages."""

    first_order_only = True

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.reg_type, self.reg_scale = cfg.option("reg_type"), float(cfg.option("reg_scale"))
        if self.reg_type not in REG_TYPES:
            raise ValueError(f"DrNAS reg_type must be one of {', '.join(REG_TYPES)}, got {self.reg_type!r}")
        self.ks = [int(cfg.option("k"))]
        built = getattr(model, "partial_channels", 1)
        if built != self.ks[0]:
            raise ValueError(f"DrNAS with k={self.ks[0]} needs a supernet built with partial_channels={self.ks[0]}, "
                             f"got {built}")
        self.warmup_epochs = int(cfg.option("arch_warmup_epochs"))
        self.cols = [o for o, name in enumerate(space.ops) if cfg.option("include_none") or name != "none"]
        if len(self.cols) < len(space.ops):
            exclude_ops(model, space, ["none"])
        self.progressive = bool(cfg.option("progressive"))
        self.stage_epochs = self.epochs
        if self.progressive:
            self._check_progressive(cfg)
        self.stage, self.epoch = 0, 0
        # Adam's weight decay is the l2 anchor (D's Architect ignores --arch_weight_decay).
        arch = cfg.arch
        self.a_optimizer = torch.optim.Adam(
            self.alphas, lr=arch.lr, betas=arch.betas, weight_decay=self.reg_scale if self.reg_type == "l2" else 0.0
        )
        # The Dirichlet draws and the widening indices: one stream on α's device, seeded from the α generator.
        seed = int(torch.randint(0, 2**62, (), generator=generator)) if generator is not None else 0
        self.sampler = torch.Generator(device=self.alphas[0].device).manual_seed(seed)
        self._cols = torch.tensor(self.cols, device=self.alphas[0].device)
        self.add_running("kl")

    def _check_progressive(self, cfg: SearchConfig) -> None:
        k, k_final, keep = self.ks[0], int(cfg.option("k_final")), int(cfg.option("keep_final"))
        self.stage_epochs, self.keep_final = int(cfg.option("stage_epochs")) or self.epochs // 2, keep
        if not 1 <= k_final <= k:
            raise ValueError(f"progressive DrNAS widens the ops: it needs 1 <= k_final <= k, got k={k}, "
                             f"k_final={k_final} (official: NB201 k 4 -> 2, DARTS space 6 -> 4)")
        if not 1 <= keep <= len(self.cols):
            raise ValueError(f"DrNAS keep_final must be in 1..{len(self.cols)} (the ops searched), got {keep}")
        if not 0 < self.stage_epochs < self.epochs:
            raise ValueError(f"DrNAS stage_epochs must leave both stages an epoch: 0 < stage_epochs < epochs = "
                             f"{self.epochs}, got {self.stage_epochs}")
        self.ks.append(k_final)
        with torch.random.fork_rng(devices=[]):  # refuse a k_final the supernet cannot take now, not at stage 2
            self._build(k_final)

    @classmethod
    def supernet_options(cls, cfg: SearchConfig) -> dict[str, Any]:
        return {"partial_channels": int(cfg.option("k"))}

    @property
    def k(self) -> int:
        """The partial-channel K of the current stage."""
        return self.ks[self.stage]

    @property
    def arch_frozen(self) -> bool:
        """True during the first `arch_warmup_epochs` epochs of each stage."""
        start = self.stage_epochs if self.stage == 1 else 0
        return self.epoch - start < self.warmup_epochs

    def arch_step_due(self) -> bool:
        return not self.arch_frozen

    # ------------------------------------------------------------------ mixing
    def relax(self, kind: str, alpha: torch.Tensor) -> torch.Tensor:
        """The genotype's and history's weights: softmax over the alive ops."""
        return masked_softmax(alpha, self.model.get_mask(kind))

    def _on_ops(self, per_col: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(edges, searched ops) values placed in an (edges, all ops) table, 0 at ops not searched."""
        if per_col.shape == like.shape:
            return per_col
        return torch.zeros_like(like).index_copy(1, self._cols, per_col)

    def sample(self, kind: str, alpha: torch.Tensor) -> torch.Tensor:
        """θ: one Dirichlet draw per edge over the searched ops, masked entries 0 and rows renormalised."""
        theta = dirichlet_rsample(concentration(alpha.index_select(1, self._cols)), self.sampler)
        return renormalise(self._on_ops(theta, alpha), self.model.get_mask(kind))

    def mean(self, kind: str, alpha: torch.Tensor) -> torch.Tensor:
        """The Dirichlet mean β/Σβ over the alive ops (what evaluation mixes by)."""
        beta = concentration(alpha.index_select(1, self._cols))
        return renormalise(self._on_ops(beta, alpha), self.model.get_mask(kind))

    def forward_weights(self, training: bool = True) -> dict[str, PartialChannels]:
        """A fresh draw per kind for each training forward; the Dirichlet mean for evaluation."""
        draw = self.sample if training else self.mean
        return {kind: PartialChannels(draw(kind, a), self.k) for kind, a in zip(self.kinds, self.alphas, strict=True)}

    def arch_penalty(self) -> torch.Tensor | None:
        """kl: reg_scale·Σ KL(Dir(β_e) ‖ Dir(1)) over every edge of every kind; l2: none (Adam's decay)."""
        if self.reg_type != "kl":
            return None
        kl = sum(kl_to_uniform(concentration(a.index_select(1, self._cols))) for a in self.alphas)
        self.accumulate("kl", kl)
        return self.reg_scale * kl

    # ------------------------------------------------------------------ progressive stages
    def _build(self, k: int) -> nn.Module:
        old = self.model
        return self.space.build_supernet(old.channels, old.cells_per_stage, old.num_classes,
                                         fused=self.cfg.fused_ops, partial_channels=k)

    def _rebuilt(self, k: int) -> nn.Module:
        """A supernet like the current one at partial channels `k`, on its device with the search's speed plan.
        Its initial values are meant to be overwritten: drawn without touching the global RNG."""
        device = next(self.model.parameters()).device
        with torch.random.fork_rng(devices=[]):
            model = self._build(k)
        return apply_speed(model.to(device), resolve_speed(self.cfg, device))

    def _new_w_optimizer(self, model: nn.Module) -> torch.optim.SGD:
        cfg, lr = self.cfg, self.w_optimizer.param_groups[0]["lr"]
        return torch.optim.SGD(list(model.parameters()), lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)

    def _use(self, model: nn.Module, optimizer: torch.optim.SGD) -> None:
        self.model, self.weights, self.w_optimizer = model, list(model.parameters()), optimizer

    def prune(self) -> dict[str, list[list[str]]]:
        """Every edge keeps its `keep_final` alive ops of largest α; returns the pruned (edge, op) per kind."""
        pruned = {}
        for kind, alpha in zip(self.kinds, self.alphas, strict=True):
            mask = self.model.get_mask(kind).clone()
            new_mask = prune_rows(alpha, mask, self.keep_final)
            self.model.set_mask(kind, new_mask)
            gone = ((mask > 0.5) & (new_mask < 0.5)).nonzero().tolist()
            pruned[kind] = [[self.space.edges[e], self.space.op_name(kind, e, o)] for e, o in gone]
        return pruned

    def widen(self, k: int) -> None:
        """Rebuild the supernet at partial channels `k`, its convs and momentum buffers widened (net2wider)."""
        old, old_optimizer = self.model, self.w_optimizer
        model = self._rebuilt(k)
        transforms = widening_transforms(old, model, self.sampler)
        model.load_state_dict(widened_state(old, model, transforms))
        optimizer = self._new_w_optimizer(model)
        old_params = dict(old.named_parameters())
        for name, param in model.named_parameters():
            buf = old_optimizer.state.get(old_params[name], {}).get("momentum_buffer")
            if buf is not None:
                buf = transforms[name](buf) if name in transforms else buf
                optimizer.state[param]["momentum_buffer"] = torch.empty_like(param).copy_(buf)
        self._use(model, optimizer)

    def next_stage(self) -> dict[str, list[list[str]]]:
        """Prune, then widen to the next stage's K; returns what was pruned."""
        pruned = self.prune()
        if self.ks[1] != self.ks[0]:
            self.widen(self.ks[1])
        self.stage = 1
        return pruned

    # ------------------------------------------------------------------ loop surface
    def set_epoch(self, epoch: int) -> float:
        self.epoch = epoch
        if self.progressive and (epoch >= self.stage_epochs) != (self.stage == 1):
            raise RuntimeError(f"DrNAS is in stage {self.stage} at epoch {epoch}, the stage boundary being "
                               f"{self.stage_epochs}: resume from a checkpoint of this search")
        return super().set_epoch(epoch)

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        """The DARTS record plus the stage, its K, whether α was frozen, the mean KL term (kl); after the first
        stage's last epoch, the pruning (its `pruned`) and the widening to the next stage."""
        steps, kl = self.running_counts["kl"], self.running["kl"].clone()
        extra = {"stage": self.stage, "partial_channels": self.k, "arch_frozen": self.arch_frozen,
                 "kl": (kl / steps).item() if steps else None}
        record = {**super().end_epoch(epochs_done, iim_batches), **extra}
        if self.progressive and self.stage == 0 and epochs_done == self.stage_epochs:
            record["pruned"] = self.space.record(self.next_stage())
        return record

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "sampler": self.sampler.get_state(), "stage": self.stage}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        stage = int(state["stage"])
        if stage != self.stage:  # a checkpoint of the other stage: the supernet at its K first
            model = self._rebuilt(self.ks[stage])
            self._use(model, self._new_w_optimizer(model))
            self.stage = stage
        super().load_state_dict(state)
        self.sampler.set_state(state["sampler"])
