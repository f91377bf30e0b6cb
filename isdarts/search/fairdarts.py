"""FairDARTS (Chu et al., ECCV 2020; FAMILY.md "FairDARTS", official code `xiaomi-automl/FairDARTS` [FD]
`fairdarts/`: model_search.py, separate_loss.py, architect.py, train_search.py, utils.py:parse).

Every candidate op gets its own sigmoid weight σ(α) (α initialised to zeros, so σ = 0.5 everywhere), so the
ops of an edge collaborate instead of competing under a softmax. A zero-one loss
    L01 = -(1/N) Σ_k (σ(α_k) - 0.5)²   (`sep_loss` l2, [FD]'s default)   or   -(1/N) Σ_k |σ(α_k) - 0.5|   (l1)
pushes every σ towards 0 or 1. N counts the entries the search actually uses: every alive (edge, op) entry of
every cell kind except `none` (the DARTS space without `none`: 2·14·7 = 196; NB201: 6·4 = 24 whether or not
`none` is in the supernet). L01, weighted by `w01`, is added to the loss of both steps of the first-order
bi-level loop (α step first on a fresh valid batch, then the weight step, as [FD]); it has no weight gradient,
and the α gradients the weight step leaves behind are discarded. `single_level`: one forward and backward on
the train batch feeds both optimisers (the valid batch the loop pairs with it goes unused).

Spaces. On the DARTS space `none` is masked out for the whole search ([FD]'s 7 ops; `include_none`). On NB201
`none` stays in the supernet by default, where it is inert: its output is never computed, so α_none gets no
gradient and stays exactly 0. Which derivation applies is read from the space's comparison groups: one edge
per group (NB201: an edge keeps one op) or one node per group (DARTS space).

Derivations, all ranking by the logits α (several σ can round to 1.0 in float32) and testing σ(α) >= τ as
α >= log(τ / (1 - τ)) in float64; `none` and masked ops are never emitted by a ranking:
- NB201 (`nb201_derive`): (a) `argmax_nonnone`, the argmax over the non-`none` ops; (b) `argmax_all`, `none`
  iff every non-`none` α is below α_none (σ < 0.5; ties go to the op), else (a); (c) `threshold_none`, `none`
  iff the best non-`none` σ is below `threshold`, else (a).
- DARTS space (`parse`, [FD] utils.py:parse): `threshold_sparse` ranks a node's input edges by their best op,
  keeps the top 2 and emits each one's best op if its σ >= threshold (0, 1 or 2 inputs per node);
  `threshold_edge` emits, on every input edge, its top-2 ops that reach the threshold; `darts` is the space's
  DARTS derivation (two inputs per node). The threshold parses give a sparse genotype (its cells are
  FairDARTS's DCOCell in the evaluation network). A cell the threshold parse leaves without any node has no
  output ([FD] would crash on it): `empty_cell` `darts` (default, our assumption) takes the `darts` parse for
  that cell kind and the epoch record names it; `error` raises GenotypeError.
Each epoch's record carries every derivation of the space (`derivations`), the primary one being `genotype()`.

The DARTS-space genotype type is imported here (isdarts.spaces.darts.genotype): the `Space` interface has no
constructor for a cell of 0..n inputs per node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.errors import GenotypeError
from isdarts.search.base import cosine_lr, set_lr
from isdarts.search.darts import Darts, exclude_ops
from isdarts.search.trajectory import describe_cell
from isdarts.spaces.darts.genotype import DartsGenotype, present_states
from isdarts.spaces.space import Genotype, Space

NONE = "none"
NB201_DERIVES = ("argmax_nonnone", "argmax_all", "threshold_none")
PARSES = ("threshold_sparse", "threshold_edge", "darts")
TOP_OPS_PER_EDGE = 2  # [FD] threshold_edge: at most the 2 strongest ops of an edge


def zero_one_loss(alphas: Sequence[torch.Tensor], entries: Sequence[torch.Tensor], count: int,
                  kind: str = "l2") -> torch.Tensor:
    """L01 over the entries marked 1 in `entries` (one 0/1 table per α): -(1/count) Σ (σ-0.5)² (l2) or
    -(1/count) Σ |σ-0.5| (l1). It lies in [-0.25, 0] (l2) or [-0.5, 0] (l1) and is 0 at σ = 0.5."""
    total = None
    for alpha, used in zip(alphas, entries, strict=True):
        d = torch.sigmoid(alpha) - 0.5
        term = ((d * d) if kind == "l2" else d.abs()).mul(used).sum()
        total = term if total is None else total + term
    return -total / count


class FairDarts(Darts):
    """FairDARTS on any space: sigmoid mixing, the zero-one loss in both steps, threshold derivations."""

    first_order_only = True

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.w01 = float(cfg.option("w01"))
        self.sep_loss = cfg.option("sep_loss")
        self.threshold = float(cfg.option("threshold"))
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"FairDARTS threshold is a sigmoid value in (0, 1), got {self.threshold}; [FD] uses 0.85")
        self.parse = cfg.option("parse")
        self.nb201_derive = cfg.option("nb201_derive")
        self.single_level = bool(cfg.option("single_level"))
        self.empty_cell = cfg.option("empty_cell")
        self.lr_epoch_offset = int(cfg.option("lr_epoch_offset"))
        if self.lr_epoch_offset not in (0, 1):
            raise ValueError(f"FairDARTS lr_epoch_offset must be 0 or 1, got {self.lr_epoch_offset}")
        if not cfg.option("include_none") and NONE in space.ops:
            exclude_ops(model, space, [NONE])
        # [FD] starts α at zeros (σ = 0.5), not at DARTS's 1e-3·N(0,1) drawn by the base class.
        with torch.no_grad():
            for alpha in self.alphas:
                alpha.zero_()
        self.none = space.ops.index(NONE) if NONE in space.ops else None
        # The entries L01 and the rankings see: alive and not `none` (masks never change in this search).
        self.usable = {kind: self._usable(model.get_mask(kind)) for kind in self.kinds}
        self.l01_entries = [self.usable[kind].to(a.dtype) for kind, a in zip(self.kinds, self.alphas, strict=True)]
        self.l01_count = int(sum(int(u.sum()) for u in self.usable.values()))
        # Per kind and edge, the op indices a derivation may pick (host-side).
        self.usable_ops = {kind: [[o for o, ok in enumerate(row) if ok] for row in used.tolist()]
                           for kind, used in self.usable.items()}
        self.threshold_logit = math.log(self.threshold / (1.0 - self.threshold))
        if self.l01_count == 0:
            raise ValueError("FairDARTS needs at least one alive op other than none")
        # One comparison group per edge (an edge keeps one op: NB201) or per node (the DARTS space).
        self.per_edge = all(len({e for e, _ in group}) == 1 for group in space.subsets)
        self.add_running("zero_one_loss")

    def _usable(self, mask: torch.Tensor) -> torch.Tensor:
        used = mask.detach() > 0.5
        if self.none is not None:
            used[:, self.none] = False
        return used

    # ------------------------------------------------------------------ hooks
    def relax(self, kind: str, alpha: torch.Tensor) -> torch.Tensor:
        """σ(α) per entry, independent across ops; masked entries (never computed) recorded as 0."""
        return torch.sigmoid(alpha) * self.model.get_mask(kind).to(alpha.dtype)

    def zero_one_loss(self) -> torch.Tensor:
        return zero_one_loss(self.alphas, self.l01_entries, self.l01_count, self.sep_loss)

    def arch_penalty(self) -> torch.Tensor:
        """w01·L01, added to the α step's CE."""
        l01 = self.zero_one_loss()
        self.accumulate("zero_one_loss", l01)
        return self.w01 * l01

    def weight_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backward of CE + w01·L01 (L01 reaches α only); returns the CE, as every method reports it."""
        loss, logits = self.loss(x, y)
        l01 = self.zero_one_loss()
        if self.single_level:
            self.accumulate("arch_loss", loss)
            self.accumulate("zero_one_loss", l01)
        (loss + self.w01 * l01).backward()
        return loss, logits

    def train_step(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bi-level: the base pair of steps. Single level: one backward on the train batch, then the weight
        step (clipped as the weight step clips) and the α step from the same gradients."""
        if not self.single_level:
            return super().train_step(x_train, y_train, x_valid, y_valid)
        self.model.train()
        result = self._weight_step(x_train, y_train)
        self.a_optimizer.step()
        for param in self.arch_parameters():
            param.grad = None
        return result

    def set_epoch(self, epoch: int) -> float:
        """Start 0-based `epoch`; lr_epoch_offset 1 trains it at the cosine's value of epoch + 1 ([FD] steps its
        scheduler at the start of each epoch)."""
        return set_lr(self.w_optimizer, cosine_lr(epoch + self.lr_epoch_offset, self.epochs, self.lr, self.lr_min))

    # ------------------------------------------------------------------ derivations
    def _logits(self) -> dict[str, list[list[float]]]:
        return {kind: a.detach().double().cpu().tolist() for kind, a in zip(self.kinds, self.alphas, strict=True)}

    def _ops(self, kind: str, edge: int) -> list[int]:
        return self.usable_ops[kind][edge]

    def _edge_genotype(self, rule: str) -> Genotype:
        """One op per edge by NB201 rule (a), (b) or (c) (module docstring), through the space's masks."""
        logits, masks = self._logits(), {}
        for kind, alpha in zip(self.kinds, self.alphas, strict=True):
            onehot = torch.zeros_like(alpha, dtype=torch.float32, device="cpu")
            for edge, row in enumerate(logits[kind]):
                ops = self._ops(kind, edge)
                if not ops:
                    raise GenotypeError(f"{kind} edge {self.space.edges[edge]} has no op other than none alive")
                best = max(ops, key=lambda o, r=row: r[o])  # first of equal logits: the lower op index
                choice = best
                if self.none is not None:
                    if rule == "argmax_all" and row[best] < row[self.none]:
                        choice = self.none
                    elif rule == "threshold_none" and row[best] < self.threshold_logit:
                        choice = self.none
                onehot[edge, choice] = 1.0
            masks[kind] = onehot
        return self.space.genotype_from_masks(masks)

    def _parse_cell(self, rows: list[list[float]], kind: str, rule: str) -> list[list[tuple[str, int]]]:
        """One cell by [FD]'s threshold parse: per node, its (search op name, input) entries (maybe none)."""
        nodes = []
        for group in self.space.subsets:
            edges = [e for e in dict.fromkeys(e for e, _ in group) if self._ops(kind, e)]
            ranked_ops = {e: sorted(self._ops(kind, e), key=lambda o, r=rows[e]: -r[o]) for e in edges}
            if rule == "threshold_edge":
                picks = [(e, o) for e in edges for o in ranked_ops[e][:TOP_OPS_PER_EDGE]]
            else:  # threshold_sparse: the top `keep` edges by their best op (stable: ties to the lower input)
                top = sorted(edges, key=lambda e: -rows[e][ranked_ops[e][0]])[: self.space.keep]
                picks = [(e, ranked_ops[e][0]) for e in top]
            nodes.append([(self.space.op_name(kind, e, o), self._input(e)) for e, o in picks
                          if rows[e][o] >= self.threshold_logit])
        return nodes

    def _input(self, edge: int) -> int:
        """The state an edge reads: j of its name "i<-j"."""
        return int(self.space.edges[edge].rpartition("<-")[2])

    def _darts_genotype(self) -> Genotype:
        """The space's DARTS derivation of the logits, unusable entries excluded."""
        with torch.no_grad():
            weights = {kind: a.detach().masked_fill(~self.usable[kind].to(a.device), float("-inf"))
                       for kind, a in zip(self.kinds, self.alphas, strict=True)}
        return self.space.genotype_from_weights(weights)

    def _node_genotype(self, rule: str, empty_cell: str) -> tuple[Genotype, list[str]]:
        """(genotype, kinds whose empty threshold cell was replaced by the `darts` parse's)."""
        if rule == "darts":
            return self._darts_genotype(), []
        logits = self._logits()
        cells = {kind: self._parse_cell(logits[kind], kind, rule) for kind in self.kinds}
        empty = [kind for kind, cell in cells.items()
                 if not present_states(tuple(tuple(node) for node in cell))]
        if empty and empty_cell == "darts":
            fallback = self._darts_genotype()
            for kind in empty:
                cells[kind] = fallback.cell(kind)[0]
        return DartsGenotype.sparse_cells(**cells), empty

    def derivations(self) -> dict[str, Callable[[], Genotype]]:
        """Every derivation of this space by name, each as it stands now (threshold parses without fallback)."""
        if self.per_edge:
            return {rule: (lambda r=rule: self._edge_genotype(r)) for rule in NB201_DERIVES}
        return {rule: (lambda r=rule: self._node_genotype(r, "error")[0]) for rule in PARSES}

    def genotype(self) -> Genotype:
        """The primary derivation: `nb201_derive` on a space whose edges keep one op, else `parse`."""
        if self.per_edge:
            return self._edge_genotype(self.nb201_derive)
        return self._node_genotype(self.parse, self.empty_cell)[0]

    # ------------------------------------------------------------------ loop surface
    def end_epoch(self, epochs_done: int, iim_batches: Any) -> dict[str, Any]:
        means = self.running_means()  # read before the base record, which would clear them
        record = super().end_epoch(epochs_done, iim_batches)
        record["arch_loss"], record["zero_one_loss"] = means["arch_loss"], means["zero_one_loss"]
        logged = {}
        for name, derive in self.derivations().items():
            try:
                genotype = derive()
            except GenotypeError:  # a threshold parse that left a cell empty
                genotype = None
            logged[name] = {"genotype": None if genotype is None else str(genotype),
                            "cell": describe_cell(self.space, genotype)}
        record["derivations"] = logged
        if not self.per_edge and self.parse != "darts":
            record["empty_cells"] = self._node_genotype(self.parse, "darts")[1]
        return record
