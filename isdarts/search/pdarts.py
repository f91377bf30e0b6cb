"""P-DARTS (Progressive DARTS, Chen et al., ICCV 2019; FAMILY.md "4. P-DARTS"; official code chenxin061/pdarts
`train_search.py`, `model_search.py`): DARTS searched in 3 stages of growing depth on a shrinking op set.

Each stage builds a fresh supernet (new weights, new α over the ops still switched on, new SGD and Adam, the
cosine restarting), deeper by `add_cells` cells than the one before (5 / 11 / 17 cells at N=1: our supernet's
N cells per stage grow by add_cells/3). Only the switches, the supernet masks, carry over. A stage trains
the weights alone for its first `warmup_epochs`, then takes an α step (first order, its gradient clipped to
norm `arch_grad_clip`) before each weight step. Every stride-1 skip output of the search cells is dropped
out at a rate that decays within the stage (`skip_drop_rate`; the supernet's `set_skip_dropout`), only in
stages whose base rate is positive. At a stage's end the lowest ops of each edge by softmax(α) are switched
off (8 -> 5 -> 3); the last stage keeps each edge's best non-`none` op, the 2 strongest edges per node, and
caps the normal cell's skips at `max_skip_normal` (`final_mask`).

Where the spec leaves a choice: α is stored at the stage's width (14 x 8, 5, 3) and scattered into the
supernet's (14, 8) mixing table; the α step's valid batch is the harness's random draw (the official code
iterates over the valid half); epoch e of a stage trains at the cosine's value of e (`lr_epoch_offset` 1:
e + 1, the official scheduler.step() at the epoch start); `genotype()` applies the final derivation to the
current α at any time, so a stop mid-search gives the cell the last stage's rule would pick. The method
switches stages in `set_epoch` (replacing `self.model`), so an epoch's record still shows the stage it
trained; a resume rebuilds the saved stage's supernet before loading it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.search.base import cosine_lr, set_lr
from isdarts.search.darts import Darts, flat_norm
from isdarts.search.speed import apply_speed, resolve_speed
from isdarts.spaces.space import Genotype, Space

STAGES = 3
DROP_DECAY = 0.2  # the skip dropout's exp(-0.2 (e - warm-up)) after the warm-up ([PD] scale_factor)


def skip_drop_rate(base: float, epoch: int, stage_epochs: int, warmup: int) -> float:
    """The skip dropout rate of 0-based `epoch` of a stage with base rate `base` ([PD]): linear from
    base·(E-1)/E during the warm-up, then base·exp(-0.2 (e - warm-up)), back at `base` on the first α epoch."""
    if epoch < warmup:
        return base * (stage_epochs - epoch - 1) / stage_epochs
    return base * math.exp(-DROP_DECAY * (epoch - warmup))


def lowest(probs: Sequence[float], n: int) -> list[int]:
    """Positions of the n smallest values, ties to the lower position ([PD] get_min_k's repeated argmin)."""
    return sorted(range(len(probs)), key=lambda i: probs[i])[:n]


def strongest(probs: Sequence[float], positions: Sequence[int]) -> int:
    """The position of the largest value among `positions`, ties to the last one ([PD] drops the lowest
    first, so among equal maxima the last survives)."""
    return max(reversed(positions), key=lambda i: probs[i])


def final_mask(
    probs: Sequence[Sequence[float]],
    ops: Sequence[Sequence[int]],
    nodes: Sequence[Sequence[int]],
    num_ops: int,
    none_op: int | None,
    skip_op: int,
    keep: int = 2,
    max_skip: int | None = None,
) -> torch.Tensor:
    """One cell kind's final (edges, ops) 0/1 mask from its last-stage softmax(α) ([PD] after the last stage).

    `probs[e][i]` weighs op `ops[e][i]` of edge e; `nodes` lists each node's input edges. Each edge takes its
    strongest non-`none` op; each node keeps its `keep` edges with the largest such weight (ties: the later
    edge). While more than `max_skip` kept edges chose skip, the weakest of those skips is removed for good
    and ops and edges are picked again ([PD] delete_min_sk_prob, keep_1_on, keep_2_branches).
    """
    removed: set[tuple[int, int]] = set()

    def pick() -> tuple[dict[int, int], list[int]]:
        choice = {}
        for e, row in enumerate(ops):
            candidates = [i for i, o in enumerate(row) if o != none_op and (e, i) not in removed]
            if not candidates:
                raise ValueError(f"edge {e} has no op left but `none` and removed skips: {row}")
            choice[e] = strongest(probs[e], candidates)
        kept = []
        for edges in nodes:
            ranked = sorted(edges, key=lambda e: probs[e][choice[e]])  # stable: ties rank the later edge higher
            kept.extend(sorted(ranked[-keep:]))
        return choice, kept

    choice, kept = pick()
    while max_skip is not None:
        skips = [e for e in kept if ops[e][choice[e]] == skip_op]
        if len(skips) <= max_skip:
            break
        weakest = min(skips, key=lambda e: probs[e][choice[e]])  # ties: the lower edge (np.argmin)
        removed.add((weakest, choice[weakest]))
        choice, kept = pick()
    mask = torch.zeros(len(ops), num_ops)
    for e in kept:
        mask[e, ops[e][choice[e]]] = 1.0
    return mask


class PDarts(Darts):
    """P-DARTS: 3 progressive stages, each a fresh deeper supernet on the ops the last one kept."""

    first_order_only = True

    # [PD] clips the weight gradient over the network parameters only; α gets its own clip (arch_grad_clip).
    clip_alpha = False

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.generator = generator  # draws every stage's α; saved with the checkpoints
        self.stage_epochs = int(cfg.option("stage_epochs"))
        self.warmup_epochs = int(cfg.option("warmup_epochs"))
        self.drop_rates = tuple(float(cfg.option(f"drop_rate_{s}")) for s in range(STAGES))
        self.ops_keep = (int(cfg.option("ops_keep_0")), int(cfg.option("ops_keep_1")), 1)
        self.add_cells = int(cfg.option("add_cells"))
        self.max_skip_normal = int(cfg.option("max_skip_normal"))
        self.arch_grad_clip = float(cfg.option("arch_grad_clip"))
        self.lr_epoch_offset = int(cfg.option("lr_epoch_offset"))
        self._check(model, space, cfg)
        self.none_op = space.ops.index("none") if "none" in space.ops else None
        self.skip_op = space.ops.index("skip_connect")
        # Each node's input edges, from the space's comparison groups (one per node on the DARTS space).
        self.nodes = [sorted({e for e, _ in group}) for group in space.subsets]
        self.num_classes = model.num_classes
        self.device = self.alphas[0].device
        self.plan = resolve_speed(cfg, self.device)  # later stages' supernets get the first one's speed settings
        self.stage, self.stage_epoch = 0, 0
        # Per kind, the op behind each α column of each edge (stage 0: all of them, as the base class drew α).
        self.stage_ops = self._ops_on(space.masks(model))
        self.schedule = [self.stage_epochs * (s + 1) for s in range(STAGES)]

    def _check(self, model: nn.Module, space: Space, cfg: SearchConfig) -> None:
        if self.stage_epochs < 1 or cfg.epochs != STAGES * self.stage_epochs:
            raise ValueError(
                f"P-DARTS runs {STAGES} stages of stage_epochs = {self.stage_epochs} epochs, so the search's epochs "
                f"must be {STAGES * self.stage_epochs}, got {cfg.epochs}; set epochs to {STAGES} x stage_epochs"
            )
        if self.warmup_epochs > self.stage_epochs:
            raise ValueError(f"P-DARTS warmup_epochs = {self.warmup_epochs} exceeds stage_epochs = "
                             f"{self.stage_epochs}; lower it")
        bad = [d for d in self.drop_rates if not d < 1]
        if bad:
            raise ValueError(f"P-DARTS skip dropout rates must be in [0, 1), got {bad[0]}")
        keep0, keep1, _ = self.ops_keep
        if not space.num_ops >= keep0 >= keep1 >= 3:
            raise ValueError(
                f"P-DARTS ops_keep_0 = {keep0}, ops_keep_1 = {keep1}: need {space.num_ops} >= ops_keep_0 >= "
                "ops_keep_1 >= 3 (the last stage needs 2 ops besides `none` per edge, so that the skip cap can "
                "always replace a skip)"
            )
        if self.add_cells % 3:
            raise ValueError(f"P-DARTS add_cells = {self.add_cells} must be a multiple of 3: the supernet grows by "
                             "the same number of cells in each of its 3 resolution stages")
        if self.lr_epoch_offset not in (0, 1):
            raise ValueError(f"P-DARTS lr_epoch_offset must be 0 or 1, got {self.lr_epoch_offset}")
        if any(self.drop_rates) and not hasattr(model, "set_skip_dropout"):
            raise ValueError(f"the {space.name} supernet has no skip dropout; set the drop_rate_* options to 0")
        if "skip_connect" not in space.ops:
            raise ValueError(f"P-DARTS needs a skip_connect op; the {space.name} space has {', '.join(space.ops)}")

    # ------------------------------------------------------------------ stages
    def stage_cells(self, stage: int) -> int:
        """The supernet's cells per resolution stage (its N) in P-DARTS stage `stage`."""
        return self.cfg.N + stage * self.add_cells // 3

    def _ops_on(self, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{kind: (edges, k) op indices} of masks that keep the same number k of ops on every edge."""
        out = {}
        for kind in self.kinds:
            rows = [[o for o, v in enumerate(row) if v > 0.5] for row in masks[kind].detach().cpu().tolist()]
            if len({len(r) for r in rows}) != 1:
                raise ValueError(f"P-DARTS needs the same number of live ops on every {kind} edge, got "
                                 f"{[len(r) for r in rows]}")
            out[kind] = torch.tensor(rows, dtype=torch.long, device=self.device)
        return out

    def _build_stage(self, stage: int, masks: Mapping[str, torch.Tensor]) -> None:
        """A fresh supernet of `stage`'s depth with `masks`, fresh α over the live ops and fresh optimisers."""
        cfg = self.cfg
        model = self.space.build_supernet(cfg.C, self.stage_cells(stage), self.num_classes, fused=cfg.fused_ops,
                                          **self.supernet_options(cfg))
        for kind in self.kinds:
            model.set_mask(kind, masks[kind])
        self.model = apply_speed(model.to(self.device), self.plan)
        self.weights = list(self.model.parameters())
        self.stage_ops = self._ops_on(masks)
        init_device = self.generator.device if self.generator is not None else torch.device("cpu")
        dtype = self.weights[0].dtype
        self.alphas = [
            nn.Parameter((1e-3 * torch.randn(tuple(self.stage_ops[kind].shape), generator=self.generator,
                                             device=init_device, dtype=dtype)).to(self.device))
            for kind in self.kinds
        ]
        cfg_arch = cfg.arch
        self.w_optimizer = torch.optim.SGD(self.weights, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                           weight_decay=cfg.weight_decay)
        self.a_optimizer = torch.optim.Adam(self.alphas, lr=cfg_arch.lr, betas=cfg_arch.betas,
                                            weight_decay=cfg_arch.weight_decay)
        self.stage = stage

    def _end_stage(self) -> Any:
        """Switch off the ops this stage ranks lowest (the last stage: all but the final cell); returns the
        switched-off (edge, op) names per kind, as the history records pruned candidates."""
        probs = {kind: torch.softmax(a.detach(), dim=-1).double().cpu().tolist()
                 for kind, a in zip(self.kinds, self.alphas, strict=True)}
        if self.stage == STAGES - 1:
            masks = self._final_masks(probs)
        else:
            masks = {}
            for kind in self.kinds:
                mask = torch.zeros(self.space.num_edges, self.space.num_ops)
                for e, (row, ops) in enumerate(zip(probs[kind], self.stage_ops[kind].tolist(), strict=True)):
                    off = set(lowest(row, len(ops) - self.ops_keep[self.stage]))
                    mask[e, [o for i, o in enumerate(ops) if i not in off]] = 1.0
                masks[kind] = mask
        pruned = {}
        for kind in self.kinds:
            before = self.model.get_mask(kind).detach().cpu()
            pruned[kind] = [[self.space.edges[e], self.space.ops[o]]
                            for e, o in ((before > 0.5) & (masks[kind] < 0.5)).nonzero().tolist()]
            self.model.set_mask(kind, masks[kind])
        return self.space.record(pruned)

    def _final_masks(self, probs: Mapping[str, Sequence[Sequence[float]]]) -> dict[str, torch.Tensor]:
        """Per kind the final cell's mask from `probs` (softmax(α) per kind); skips capped in the normal cell."""
        return {
            kind: final_mask(
                probs[kind], self.stage_ops[kind].tolist(), self.nodes, self.space.num_ops, self.none_op,
                self.skip_op, self.space.keep, self.max_skip_normal if kind == "normal" else None,
            )
            for kind in self.kinds
        }

    # ------------------------------------------------------------------ mixing
    def relax(self, kind: str, alpha: torch.Tensor) -> torch.Tensor:
        """softmax(α) over the stage's live ops, scattered into the (edges, ops) table (0 on switched-off ops)."""
        table = torch.zeros(alpha.shape[0], self.space.num_ops, dtype=alpha.dtype, device=alpha.device)
        return table.scatter(1, self.stage_ops[kind], torch.softmax(alpha, dim=-1))

    def arch_step_due(self) -> bool:
        return self.stage_epoch >= self.warmup_epochs

    def arch_grads(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> list[torch.Tensor]:
        """The first-order α gradient, clipped to norm `arch_grad_clip` as torch's clip_grad_norm_ ([PD])."""
        grads = super().arch_grads(x_train, y_train, x_valid, y_valid)
        if self.arch_grad_clip > 0:
            coef = (self.arch_grad_clip / (flat_norm(grads) + 1e-6)).clamp(max=1.0)
            grads = [g * coef for g in grads]
        return grads

    def genotype(self) -> Genotype:
        """The final cell P-DARTS's last-stage rule picks from the current α (see `final_mask`)."""
        with torch.no_grad():
            probs = {kind: torch.softmax(a, dim=-1).double().cpu().tolist()
                     for kind, a in zip(self.kinds, self.alphas, strict=True)}
        return self.space.genotype_from_masks(self._final_masks(probs))

    # ------------------------------------------------------------------ loop surface
    def set_epoch(self, epoch: int) -> float:
        """Start 0-based `epoch`: a new stage's supernet when it begins one, the stage's skip dropout rate and
        its restarted cosine."""
        while self.stage < min(epoch // self.stage_epochs, STAGES - 1):
            self._build_stage(self.stage + 1, {kind: self.model.get_mask(kind).detach().clone()
                                               for kind in self.kinds})
        self.stage_epoch = epoch - self.stage * self.stage_epochs
        base = self.drop_rates[self.stage]
        if base > 0:  # a stage with base rate 0 has no dropout at all ([PD] builds none)
            self.model.set_skip_dropout(skip_drop_rate(base, self.stage_epoch, self.stage_epochs, self.warmup_epochs))
        lr = cosine_lr(self.stage_epoch + self.lr_epoch_offset, self.stage_epochs, self.lr, self.lr_min)
        return set_lr(self.w_optimizer, lr)

    def end_epoch(self, epochs_done: int, iim_batches: Any) -> dict[str, Any]:
        """The DARTS record with α at full width (null on switched-off ops) and the stage; at a stage's end
        its switch-off, recorded as a shrink step (0-based stage) with the ops it switched off."""
        record = super().end_epoch(epochs_done, iim_batches)
        record["alpha"] = self._alpha_record()
        record["stage"] = self.stage
        if epochs_done % self.stage_epochs == 0:
            record["shrink_step"] = self.stage
            record["pruned"] = self._end_stage()
        return record

    def _alpha_record(self) -> Any:
        tables = {}
        for kind, alpha in zip(self.kinds, self.alphas, strict=True):
            rows = [[None] * self.space.num_ops for _ in range(self.space.num_edges)]
            for e, (values, ops) in enumerate(zip(alpha.detach().cpu().tolist(), self.stage_ops[kind].tolist(),
                                                  strict=True)):
                for value, o in zip(values, ops, strict=True):
                    rows[e][o] = value
            tables[kind] = rows
        return self.space.record(tables)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "stage": self.stage,
            "stage_ops": self.space.record({kind: ops.cpu().clone() for kind, ops in self.stage_ops.items()}),
            "generator": None if self.generator is None else self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the saved stage's supernet (its depth, α widths, optimisers), then load into it."""
        stage = int(state["stage"])
        ops = {kind: torch.as_tensor(v).to(self.device) for kind, v in self.space.per_kind(state["stage_ops"]).items()}
        if stage != self.stage or any(not torch.equal(ops[k], self.stage_ops[k]) for k in self.kinds):
            masks = {kind: torch.zeros(self.space.num_edges, self.space.num_ops).scatter(1, ops[kind].cpu(), 1.0)
                     for kind in self.kinds}
            self._build_stage(stage, masks)
        if self.generator is not None and state["generator"] is not None:
            self.generator.set_state(state["generator"])
        super().load_state_dict(state)
