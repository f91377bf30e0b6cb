"""DARTS-PT (Wang et al., ICLR 2021; FAMILY.md "5. DARTS-PT"): DARTS supernet training, then perturbation-based
projection of one edge at a time with fine-tuning in between.

Source: ruocwang/darts-pt `nasbench201/projection.py` (`pt_project`), `nasbench201/search_model_darts_proj.py`
(`get_projected_weights`, `project_op`), `sota/cnn/projection.py` (`project_op`, `project_edge`, `pt_project`),
`sota/cnn/model_search_darts_proj.py` (`nid2eids`, `genotype`).

The method's `epochs` are the supernet epochs followed by `tune_epochs` tuning epochs (paper: 100 + 25 on NB201,
50 + 81 on the DARTS space). Phase 1 is DARTS 1st order, α step first, the weights' lr on a cosine over the
supernet epochs. Phase 2 restarts the weights' SGD (momentum buffers cleared) at a constant lr/10 (the official
NB201 code has no scheduler; its DARTS-space cosine is never stepped); α keeps training with the same Adam
(`train_alpha` false: the "blank" variant, α never trained). Before tuning epoch t, when t % proj_interval == 0 or
t is the last tuning epoch, one projection event runs, for each cell kind in turn:
- op projection while the kind has unprojected edges: an edge e drawn uniformly among them; for each alive op o
  the supernet, mixed by the current weights (softmax(α) on open edges, one-hot on projected ones) with w[e, o]
  zeroed and nothing renormalised, is measured on the valid half; the edge keeps the op whose removal hurts most
  (`acc`: lowest accuracy, `loss`: highest loss; the first op on ties);
- then topology projection (comparison groups with more than `keep` edges: DARTS nodes 1-3): a node drawn
  uniformly among those left; until `keep` edges remain, each remaining edge's row is zeroed in turn and the edge
  whose removal hurts least is dropped (`acc`: highest accuracy, `loss`: lowest loss; the last on ties). As in
  the official code, edges dropped earlier in the same node still count in the later rounds' measurements.

What our implementation does where the spec leaves a choice:
- A projected edge keeps only its op in the supernet mask (weight exactly 1 through `masked_softmax`); a dropped
  edge keeps none; so neither is ever computed. Their α rows freeze (restored bit for bit after each α step),
  which the official code gets by overwriting the softmax output.
- A measurement runs the whole valid half (`proj_batches` 0; else its first k batches) at the search's batch
  size, in train mode and float32 under no_grad, as the official code's `infer(..., eval=False)`; with
  `proj_augment` (the official valid queue uses the training transform) the images are shuffled, cropped and
  flipped from the loop's checkpointed valid-data generator. The BN running statistics (stem and head; the cells
  keep none) are restored after each measurement, so projections leave no trace in later evaluations.
- The edge and node draws come from this method's own generator (seeded from the α generator, checkpointed).
- `include_none` false masks `none` out for the whole search (the official DARTS-space code searches the 7-op
  `s5` space); on NB201 `none` stays and its removal changes nothing.
- The genotype is the space's DARTS derivation of the projected weights at every epoch: the projected cell once
  every edge and node is projected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.data.device_loader import DeviceImages
from isdarts.search.base import Batches, cosine_lr, set_lr
from isdarts.search.darts import Darts, exclude_ops, masked_softmax
from isdarts.search.speed import full_precision
from isdarts.spaces.space import Space

log = logging.getLogger(__name__)

Weights = dict[str, torch.Tensor]


def event_epochs(tune_epochs: int, interval: int) -> list[int]:
    """The tuning epochs (0-based) before which a projection event runs: every `interval`-th and the last."""
    return [t for t in range(tune_epochs) if t % interval == 0 or t == tune_epochs - 1]


@contextmanager
def kept_bn_statistics(model: nn.Module) -> Iterator[None]:
    """Restore every BN running statistic on exit (train-mode measurement passes update them)."""
    saved = [
        (buf, buf.clone()) for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
        for buf in (module.running_mean, module.running_var, module.num_batches_tracked) if buf is not None
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


class DartsPt(Darts):
    """DARTS-PT on any space: DARTS 1st order, then op and topology projections by the valid accuracy drop."""

    first_order_only = True

    # The official code clips the network weights only (α are not among them) on both spaces.
    clip_alpha = False

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        self.tune_epochs = int(cfg.option("tune_epochs"))
        self.supernet_epochs = cfg.epochs - self.tune_epochs
        if self.supernet_epochs < 1:
            raise ValueError(
                f"DARTS-PT's epochs = {cfg.epochs} must hold at least one supernet epoch plus tune_epochs = "
                f"{self.tune_epochs}; set epochs to supernet epochs + tune_epochs (paper: 100 + 25 = 125 on NB201, "
                "50 + 81 = 131 on the DARTS space) or lower tune_epochs"
            )
        self.interval = int(cfg.option("proj_interval"))
        if self.interval < 1:
            raise ValueError(f"DARTS-PT proj_interval must be at least 1, got {self.interval}")
        self.crit = cfg.option("proj_crit")
        self.train_alpha = bool(cfg.option("train_alpha"))
        self.proj_batches = int(cfg.option("proj_batches"))
        self.proj_augment = bool(cfg.option("proj_augment"))
        self.batch_size = cfg.batch_size
        if not cfg.option("include_none"):
            exclude_ops(model, space, ["none"])
        # Per comparison group its edges; groups with more than `keep` edges get a topology projection.
        self.groups = [tuple(dict.fromkeys(e for e, _ in subset)) for subset in space.subsets]
        self.topology_groups = [g for g, edges in enumerate(self.groups) if len(edges) > space.keep]
        self.events = event_epochs(self.tune_epochs, self.interval)
        needed = space.num_edges + len(self.topology_groups)
        if len(self.events) < needed:
            log.warning(
                "DARTS-PT: %d tuning epochs at interval %d hold %d projection events, fewer than the %d a full "
                "projection needs; the rest of the cell is derived from α", self.tune_epochs, self.interval,
                len(self.events), needed,
            )
        self.projected = {kind: [False] * space.num_edges for kind in self.kinds}
        self.group_done = {kind: [False] * len(self.groups) for kind in self.kinds}
        # The edge and node draws: an own stream, seeded from the α draw's generator and checkpointed.
        seed = int(torch.randint(0, 2**62, (), generator=generator)) if generator is not None else 0
        self.picker = torch.Generator().manual_seed(seed)
        self.valid: DeviceImages | None = None
        self.data_generator: torch.Generator | None = None
        self._refresh_frozen()

    def attach_data(self, images: DeviceImages, generator: torch.Generator) -> None:
        """The valid half the projections measure on, and the loop's checkpointed generator for its batches."""
        self.valid, self.data_generator = images, generator

    # ------------------------------------------------------------------ training
    def relax(self, kind: str, alpha: torch.Tensor) -> torch.Tensor:
        """Softmax over the alive ops: one-hot on a projected edge, zero on a dropped one."""
        return masked_softmax(alpha, self.model.get_mask(kind))

    def arch_step_due(self) -> bool:
        return self.train_alpha

    def set_epoch(self, epoch: int) -> float:
        """A cosine over the supernet epochs, then lr/10 for every tuning epoch."""
        if epoch < self.supernet_epochs:
            return set_lr(self.w_optimizer, cosine_lr(epoch, self.supernet_epochs, self.lr, self.lr_min))
        return set_lr(self.w_optimizer, self.lr / 10)

    def _refresh_frozen(self) -> None:
        device = self.alphas[0].device
        self.frozen = [torch.tensor(self.projected[kind], device=device) for kind in self.kinds]

    def _arch_step(self, *batch: torch.Tensor) -> None:
        """The α step with projected rows left exactly as they were."""
        saved = [a.detach().clone() for a in self.alphas]
        super()._arch_step(*batch)
        with torch.no_grad():
            for alpha, before, rows in zip(self.alphas, saved, self.frozen, strict=True):
                alpha.copy_(torch.where(rows.unsqueeze(-1), before, alpha))

    # ------------------------------------------------------------------ projection
    def measure(self, weights: Weights) -> tuple[int, float]:
        """(correct predictions, summed loss) of the supernet mixed by `weights` on the valid half."""
        if self.valid is None:
            raise RuntimeError("DARTS-PT measures projections on the valid half: call attach_data first")
        generator = self.data_generator if self.proj_augment else None
        correct = torch.zeros((), dtype=torch.int64, device=self.valid.device)
        loss = torch.zeros((), dtype=torch.float64, device=self.valid.device)
        was_training = self.model.training
        self.model.train()
        with torch.no_grad(), full_precision(self.model), kept_bn_statistics(self.model):
            batches = self.valid.batches(
                self.batch_size, augment=self.proj_augment, shuffle=self.proj_augment, generator=generator
            )
            for i, (x, y) in enumerate(batches):
                if self.proj_batches and i >= self.proj_batches:
                    break
                logits = self.model(x, weights=weights)[1]
                loss += F.cross_entropy(logits.float(), y, reduction="sum").double()
                correct += (logits.argmax(1) == y).sum()
        self.model.train(was_training)
        return int(correct.item()), float(loss.item())

    def _current(self) -> Weights:
        return {kind: w.detach() for kind, w in self.arch_weights().items()}

    def _worse(self, new: tuple[int, float], old: tuple[int, float]) -> bool:
        """Whether measurement `new` is strictly worse than `old` by the projection criterion."""
        return new[0] < old[0] if self.crit == "acc" else new[1] > old[1]

    def project_op(self, kind: str) -> dict[str, Any]:
        """Project a random open edge of `kind` onto the op whose removal hurts most (first on ties)."""
        open_edges = [e for e, done in enumerate(self.projected[kind]) if not done]
        edge = open_edges[int(torch.randint(len(open_edges), (), generator=self.picker))]
        mask = self.model.get_mask(kind).detach().cpu()
        base = self._current()
        best, best_stats, measured = None, None, {}
        for op in (o for o in range(self.space.num_ops) if mask[edge, o] > 0):
            table = base[kind].clone()
            table[edge, op] = 0.0
            stats = self.measure({**base, kind: table})
            measured[self.space.op_name(kind, edge, op)] = list(stats)
            if best_stats is None or self._worse(stats, best_stats):
                best, best_stats = op, stats
        mask[edge] = 0
        mask[edge, best] = 1
        self.model.set_mask(kind, mask)
        self.projected[kind][edge] = True
        return {"edge": self.space.edges[edge], "op": self.space.op_name(kind, edge, best), "measured": measured}

    def project_topology(self, kind: str) -> dict[str, Any]:
        """Keep the `keep` edges of a random unprojected group whose removals hurt most, dropping one per round
        (the edge whose removal gives the best criterion, the last on ties)."""
        left = [g for g in self.topology_groups if not self.group_done[kind][g]]
        group = left[int(torch.randint(len(left), (), generator=self.picker))]
        edges = list(self.groups[group])
        base = self._current()
        rounds = []
        while len(edges) > self.space.keep:
            drop, drop_stats, measured = None, None, {}
            for edge in edges:
                table = base[kind].clone()
                table[edge] = 0.0
                stats = self.measure({**base, kind: table})
                measured[self.space.edges[edge]] = list(stats)
                if drop_stats is None or not self._worse(stats, drop_stats):
                    drop, drop_stats = edge, stats
            edges.remove(drop)
            rounds.append({"dropped": self.space.edges[drop], "measured": measured})
        mask = self.model.get_mask(kind).detach().cpu()
        for edge in self.groups[group]:
            if edge not in edges:
                mask[edge] = 0
        self.model.set_mask(kind, mask)
        self.group_done[kind][group] = True
        return {"group": group, "kept": [self.space.edges[e] for e in edges], "rounds": rounds}

    def project(self) -> dict[str, Any]:
        """One projection event: per kind in order, an op projection while edges are open, else a topology one."""
        done = {}
        for kind in self.kinds:
            if not all(self.projected[kind]):
                done[kind] = self.project_op(kind)
            elif any(not self.group_done[kind][g] for g in self.topology_groups):
                done[kind] = self.project_topology(kind)
            else:
                done[kind] = None
            log.info("DARTS-PT %s projection: %s", kind, done[kind])
        self._refresh_frozen()
        return done

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        """Before the first tuning epoch the weights' SGD restarts; before each event epoch a projection runs."""
        record = super().end_epoch(epochs_done, iim_batches)
        tuning_epoch = epochs_done - self.supernet_epochs  # the tuning epoch that starts next
        if tuning_epoch == 0:
            self.w_optimizer.state.clear()  # a fresh SGD: no momentum carried into tuning
        projection = None
        if tuning_epoch in self.events:
            before = {kind: self.model.get_mask(kind).detach().cpu().clone() for kind in self.kinds}
            projection = self.space.record(self.project())
            record["pruned"] = self.space.record({
                kind: [[self.space.edges[e], self.space.op_name(kind, e, o)]
                       for e, o in (before[kind] > self.model.get_mask(kind).detach().cpu()).nonzero().tolist()]
                for kind in self.kinds
            })
        record["projection"] = projection
        record["phase"] = "supernet" if tuning_epoch <= 0 else "tuning"
        return record

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "projected": self.space.record({kind: list(self.projected[kind]) for kind in self.kinds}),
            "group_done": self.space.record({kind: list(self.group_done[kind]) for kind in self.kinds}),
            "picker": self.picker.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        projected, group_done = self.space.per_kind(state["projected"]), self.space.per_kind(state["group_done"])
        for kind in self.kinds:
            self.projected[kind] = [bool(v) for v in projected[kind]]
            self.group_done[kind] = [bool(v) for v in group_done[kind]]
        self.picker.set_state(state["picker"])
        self._refresh_frozen()
