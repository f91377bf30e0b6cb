"""SGAS (Li et al., CVPR 2020; FAMILY.md "3. SGAS"): DARTS 1st order that fixes edges greedily during the search.

Source: lightaime/sgas `cnn/train_search.py` (`edge_decision`, `histogram_average`, the epoch formula, the loader
rebuild), `cnn/model_search.py` (`Cell.forward`, `check_edges`, `parse_gene_force`), `cnn/utils.py`
(`normalize`, `histogram_intersection`).

Each step is an α step (Adam, first order) on the valid batch, then a weight step (SGD, α outside the clip). After
every epoch e (0-based), for each cell kind in turn, the edges of the kind are scored from P = softmax(α) over
ALL edges (decided and pruned included): importance 1 - P[none], certainty 1 - H(p)/log|p| with p the non-`none`
ops renormalised, and (criterion 2) the mean histogram intersection of p with the p of the last `history_size`
epochs; each term is min-max normalised over all edges and the score is their product. The p history is appended
every epoch, after scoring. On epochs e >= warmup_epochs with (e - warmup_epochs) % decision_interval == 0, the
undecided edge with the best score is decided: its op is the argmax of P over the ops a cell may use (never
`none`; `allow_none` lets an NB201 edge take it), its α row freezes, and once a comparison group (a DARTS node)
holds `keep` decided edges, its other edges are pruned (their α rows freeze too). Each epoch with a decision
grows the next epoch's batch by `batch_increase`.

What our implementation does where the spec leaves a choice:
- Everything goes through the supernet mask: an undecided edge keeps all its ops (mixed by the plain softmax), a
  decided edge keeps only its op, whose weight is then exactly 1 (`masked_softmax`: op*(x), unweighted), and a
  pruned edge keeps none (never computed).
- Frozen α rows are kept out of Adam's update (restored bit for bit after each α step), as the official code's
  requires_grad=False (grad None: no step, no weight decay) does.
- The genotype before every decision is made is `parse_gene_force`'s: the decided edges, plus in each group the
  undecided edges with the largest importance, each with its best usable op.
- On NB201 (not official, "SGAS-NB201 (ours)") every edge is its own group keeping 1 op: 6 decisions, no
  pruning. All of this is read from the space (`subsets`, `keep`), never from its name.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.search.base import Batches, cosine_lr, set_lr
from isdarts.search.darts import Darts, masked_softmax
from isdarts.spaces.space import Genotype, Space

log = logging.getLogger(__name__)

OPEN, PRUNED = -1, -2  # an edge's state besides a decided op index


def normalise(v: torch.Tensor) -> torch.Tensor:
    """(v - min) / (max - min) over all entries; zeros when the range is 0."""
    low, span = v.min(), v.max() - v.min()
    return (v - low) / span if span > 0 else torch.zeros_like(v)


def op_distribution(probs: torch.Tensor, none: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(importance 1 - P[:, none], p = P over the other ops renormalised) of an (edges, ops) softmax table."""
    others = [o for o in range(probs.shape[1]) if o != none]
    rest = probs[:, others]
    importance = rest.sum(dim=1)
    return importance, rest / importance.unsqueeze(1)


def normalised_entropy(p: torch.Tensor) -> torch.Tensor:
    """Per row H(p) / log(#ops): 1 for a uniform row, 0 for a one-hot one."""
    return torch.special.entr(p).sum(dim=1) / math.log(p.shape[1])


def histogram_intersection(history: Sequence[torch.Tensor], p: torch.Tensor) -> torch.Tensor:
    """Per row the mean over the stored histograms h of sum_o min(h[e, o], p[e, o]); zeros without a history."""
    if not history:
        return torch.zeros(p.shape[0], dtype=p.dtype)
    return torch.stack([torch.minimum(h, p).sum(dim=1) for h in history]).mean(dim=0)


def edge_scores(
    probs: torch.Tensor, none: int, history: Sequence[torch.Tensor], use_history: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(score per edge, p): criterion 1 N(imp)·N(1-H), criterion 2 also ·N(hist), normalised over all edges."""
    importance, p = op_distribution(probs, none)
    score = normalise(importance) * normalise(1 - normalised_entropy(p))
    if use_history:
        score = score * normalise(histogram_intersection(history, p))
    return score, p


def best_op(row: Sequence[float], usable: Sequence[int]) -> int:
    """The usable op with the largest weight in `row` (the first on ties)."""
    return max(usable, key=lambda o: (row[o], -o))


def first_argmax(values: Sequence[float], among: Sequence[int]) -> int:
    """The index in `among` with the largest value (the first on ties), as torch.argmax picks it."""
    return max(among, key=lambda i: (values[i], -i))


class Sgas(Darts):
    """SGAS on any space: greedy edge decisions by importance, certainty and (criterion 2) stability."""

    first_order_only = True

    # The official code keeps α out of model.parameters(): the weight step's clip never counts it.
    clip_alpha = False

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        criterion = int(cfg.option("criterion"))
        if criterion not in (1, 2):
            raise ValueError(f"SGAS criterion must be 1 (importance, certainty) or 2 (also stability), got {criterion}")
        self.use_history = criterion == 2
        self.warmup = int(cfg.option("warmup_epochs"))
        self.interval = int(cfg.option("decision_interval"))
        self.history_size = int(cfg.option("history_size"))
        self.batch_increase = int(cfg.option("batch_increase"))
        self.lr_epoch_offset = int(cfg.option("lr_epoch_offset"))
        if self.lr_epoch_offset not in (0, 1):
            raise ValueError(f"SGAS lr_epoch_offset must be 0 or 1, got {self.lr_epoch_offset}")
        for name, value in (("decision_interval", self.interval), ("history_size", self.history_size)):
            if value < 1:
                raise ValueError(f"SGAS {name} must be at least 1, got {value}")
        if "none" not in space.ops:
            raise ValueError(f"SGAS scores edges by their `none` weight; the {space.name} space has no `none` op")
        self.none = space.ops.index("none")
        allow_none = bool(cfg.option("allow_none"))
        self.usable = [
            o for o, name in enumerate(space.ops)
            if name not in space.derive_excludes and (allow_none or name != "none")
        ]
        # The edges of each comparison group (a DARTS node's inputs, an NB201 edge) and how many it keeps.
        self.groups = [tuple(dict.fromkeys(e for e, _ in subset)) for subset in space.subsets]
        self.decisions = sum(min(space.keep, len(group)) for group in self.groups)
        last = self.warmup + self.interval * (self.decisions - 1)
        if last >= cfg.epochs:
            log.warning(
                "SGAS: the last of %d decisions would come after epoch %d, but the search has %d epochs; the rest of "
                "the cell is derived from α (paper: warm-up 9, interval 5, 50 epochs on the DARTS space)",
                self.decisions, last + 1, cfg.epochs,
            )
        self.base_batch_size = cfg.batch_size
        self.state = {kind: [OPEN] * space.num_edges for kind in self.kinds}
        self.history: dict[str, list[torch.Tensor]] = {kind: [] for kind in self.kinds}
        self.decision_epochs = 0
        self._refresh_frozen()

    # ------------------------------------------------------------------ mixing
    def relax(self, kind: str, alpha: torch.Tensor) -> torch.Tensor:
        """Softmax over the alive ops: all of an undecided edge's, weight exactly 1 on a decided edge's op."""
        return masked_softmax(alpha, self.model.get_mask(kind))

    def set_epoch(self, epoch: int) -> float:
        """The cosine over all epochs; with lr_epoch_offset 1 epoch e trains at its value of e + 1 (the official
        scheduler.step() at each epoch's start, under the PyTorch 1.4 its README names)."""
        return set_lr(self.w_optimizer, cosine_lr(epoch + self.lr_epoch_offset, self.epochs, self.lr, self.lr_min))

    @property
    def train_batch_size(self) -> int:
        """The next epoch's batch size: grown by `batch_increase` after each epoch with a decision."""
        return self.base_batch_size + self.batch_increase * self.decision_epochs

    def _refresh_frozen(self) -> None:
        device = self.alphas[0].device
        self.frozen = [
            torch.tensor([s != OPEN for s in self.state[kind]], device=device) for kind in self.kinds
        ]

    def _arch_step(self, *batch: torch.Tensor) -> None:
        """The α step with decided and pruned rows left exactly as they were (no gradient, decay or momentum)."""
        saved = [a.detach().clone() for a in self.alphas]
        super()._arch_step(*batch)
        with torch.no_grad():
            for alpha, before, rows in zip(self.alphas, saved, self.frozen, strict=True):
                alpha.copy_(torch.where(rows.unsqueeze(-1), before, alpha))

    # ------------------------------------------------------------------ decisions
    def decision_due(self, epoch: int) -> bool:
        """Whether the end of 0-based `epoch` is a decision epoch (candidates permitting)."""
        return epoch >= self.warmup and (epoch - self.warmup) % self.interval == 0

    def decide(self, kind: str, probs: torch.Tensor, score: torch.Tensor) -> tuple[int, int] | None:
        """Decide kind's best-scored undecided edge and prune full groups; (edge, op), or None if none is left."""
        state = self.state[kind]
        candidates = [e for e, s in enumerate(state) if s == OPEN]
        if not candidates:
            return None
        edge = first_argmax(score.tolist(), candidates)
        op = best_op(probs[edge].tolist(), self.usable)
        state[edge] = op
        # check_edges: a group with `keep` decided edges drops its other inputs.
        for group in self.groups:
            if sum(state[e] >= 0 for e in group) >= self.space.keep:
                for e in group:
                    if state[e] == OPEN:
                        state[e] = PRUNED
        return edge, op

    def _apply_masks(self) -> list[list[list[str]]]:
        """Set every kind's mask from the edge states; per kind the (edge, op) pairs newly masked."""
        masked = []
        for kind in self.kinds:
            old = self.model.get_mask(kind).detach().cpu()
            mask = old.clone()
            for e, s in enumerate(self.state[kind]):
                if s == PRUNED:
                    mask[e] = 0
                elif s >= 0:
                    mask[e] = 0
                    mask[e, s] = 1
            self.model.set_mask(kind, mask)
            masked.append([[self.space.edges[e], self.space.op_name(kind, e, o)]
                           for e, o in ((old > mask).nonzero().tolist())])
        self._refresh_frozen()
        return masked

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        """Score every kind's edges, decide on a decision epoch, grow the batch; the record says what happened."""
        record = super().end_epoch(epochs_done, iim_batches)
        epoch = epochs_done - 1
        due = self.decision_due(epoch)
        decided, scores = {}, {}
        for kind, alpha in zip(self.kinds, self.alphas, strict=True):
            probs = torch.softmax(alpha.detach().double().cpu(), dim=-1)
            score, p = edge_scores(probs, self.none, self.history[kind], self.use_history)
            history = self.history[kind]
            history.append(p)
            del history[: max(0, len(history) - self.history_size)]
            choice = self.decide(kind, probs, score) if due else None
            decided[kind] = None if choice is None else [self.space.edges[choice[0]],
                                                         self.space.op_name(kind, *choice)]
            scores[kind] = score.tolist()
            if choice is not None:
                log.info("SGAS epoch %d: %s edge %s decided as %s", epochs_done, kind, *decided[kind])
        masked: list[list[list[str]]] = [[] for _ in self.kinds]
        if any(d is not None for d in decided.values()):
            masked = self._apply_masks()
            self.decision_epochs += 1
        record["pruned"] = self.space.record(dict(zip(self.kinds, masked, strict=True)))
        record["decision"] = self.space.record(decided)
        record["edge_score"] = self.space.record(scores)
        record["next_batch_size"] = self.train_batch_size
        return record

    # ------------------------------------------------------------------ genotype
    def genotype(self) -> Genotype:
        """The decided edges; in groups still short of `keep`, the undecided edges of largest importance with
        their best usable op (the official parse_gene_force), so a cell exists at every epoch."""
        masks = {}
        for kind, alpha in zip(self.kinds, self.alphas, strict=True):
            probs = torch.softmax(alpha.detach().double().cpu(), dim=-1)
            importance = (1 - probs[:, self.none]).tolist()
            rows = probs.tolist()
            state = self.state[kind]
            mask = torch.zeros(self.space.num_edges, self.space.num_ops)
            for group in self.groups:
                chosen = [e for e in group if state[e] >= 0]
                for e in chosen:
                    mask[e, state[e]] = 1
                need = min(self.space.keep, len(group)) - len(chosen)
                open_edges = sorted((e for e in group if state[e] == OPEN), key=lambda e: -importance[e])
                for e in open_edges[:need]:
                    mask[e, best_op(rows[e], self.usable)] = 1
            masks[kind] = mask
        return self.space.genotype_from_masks(masks)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "edge_state": self.space.record({kind: list(self.state[kind]) for kind in self.kinds}),
            "p_history": self.space.record({kind: [h.clone() for h in self.history[kind]] for kind in self.kinds}),
            "decision_epochs": self.decision_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        edge_state, history = self.space.per_kind(state["edge_state"]), self.space.per_kind(state["p_history"])
        for kind in self.kinds:
            self.state[kind] = [int(s) for s in edge_state[kind]]
            self.history[kind] = [h.clone() for h in history[kind]]
        self.decision_epochs = int(state["decision_epochs"])
        self._refresh_frozen()
