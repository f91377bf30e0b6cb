"""SETN (Dong & Yang, ICCV 2019; FAMILY.md "Sampling: SETN"), after AutoDL's NB201 driver
(`D-X-Y/AutoDL-Projects:exps/NAS-Bench-201-algos/SETN.py`, `xautodl/models/cell_searchs/search_model_setn.py`).

Each training step has two halves, weight step first:
- weight step (train batch): one architecture drawn **uniformly** (every edge an independent uniform choice,
  α unused), run as a single path (`isdarts.spaces.mixing.SampledPath`: the other ops never run), SGD step;
- α step (valid batch): the DARTS mixed forward, softmax(α) over every op, Adam step (first order).
The cell is not argmax α: α only proposes. A selection enumerates every cell (5^6 = 15625 on NB201, in
AutoDL's `Structure.gen_all` order: first edge most significant), scores each by log p(a) = Σ_e
log_softmax(α_e)[a_e], keeps the `select_num` best (a stable sort: ties keep enumeration order) and runs each
as a single path in eval mode on its own next batch of the valid half (test transforms, shuffled passes),
returning the most accurate (the first on ties).

Where the spec leaves a choice: AutoDL selects before the first epoch (logged only), after every epoch
(logged) and once more after the last one (reported). We select after every epoch (`select_every_epoch`;
false: after the last only, for cheaper monitoring) and report the last epoch's selection, so the final
call and the last logged one are one selection on one set of batches rather than two. Each selection
starts a fresh shuffled pass of the valid half, as AutoDL's fresh `iter(valid_loader)` does. Between
selections the cell (`genotype`, and the path evaluation runs) is the latest selection, or α's argmax before
the first. The batch helpers here (`BatchStream`, `fixed_path`, `best_of`) are shared with ENAS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.search.darts import Darts
from isdarts.spaces.mixing import SampledPath
from isdarts.spaces.space import Genotype, Space

MAX_CELLS = 10**6  # the most cells an exhaustive selection enumerates


class BatchStream:
    """Batches of a `DeviceImages` one after another: a shuffled pass, and a new one when it runs out (a fresh
    `iter(loader)` restarted on exhaustion, as AutoDL's selection and controller loops do)."""

    def __init__(self, images: Any, batch_size: int, augment: bool, generator: torch.Generator | None) -> None:
        self.images, self.batch_size, self.augment, self.generator = images, batch_size, augment, generator
        self._batches: Any = None

    def _new_pass(self) -> Any:
        return self.images.batches(self.batch_size, augment=self.augment, shuffle=True, generator=self.generator)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._batches is None:
            self._batches = self._new_pass()
        try:
            return next(self._batches)
        except StopIteration:
            self._batches = self._new_pass()
            return next(self._batches)


def check_per_edge_space(space: Space, method: str) -> None:
    """Raise unless `space`'s cell is one op per edge of one cell kind (NB201): what a path encodes."""
    per_edge = all(len({e for e, _ in subset}) == 1 for subset in space.subsets)
    if len(space.kinds) != 1 or space.keep != 1 or not per_edge:
        raise ValueError(
            f"{method} searches cells of one op per edge of one cell kind (NB201); the {space.name} space has "
            f"kinds {space.kinds} keeping {space.keep} candidates per group"
        )


def fixed_path(index: Sequence[int], num_ops: int, device: torch.device | str) -> SampledPath:
    """The single path running op `index[e]` on edge e with weight 1 and no gradient."""
    hard = torch.zeros(len(index), num_ops, device=device)
    hard[torch.arange(len(index)), torch.tensor(list(index))] = 1.0
    return SampledPath(hard, tuple(int(i) for i in index), False)


@torch.no_grad()
def best_of(model: nn.Module, kind: str, paths: Sequence[SampledPath], stream: BatchStream) -> tuple[int, float]:
    """Each path run in eval mode on the stream's next batch; (index of the most accurate, the first on ties,
    its top-1 accuracy in percent). The model's train/eval mode is restored."""
    training = model.training
    model.eval()
    try:
        hits = []
        for path in paths:
            x, y = stream.next()
            logits = model(x, weights={kind: path})[1]
            hits.append((logits.argmax(1) == y).double().mean())
    finally:
        model.train(training)
    accs = torch.stack(hits).tolist()  # one host sync for the whole selection
    best = accs.index(max(accs))
    return best, 100.0 * accs[best]


def enumerate_cells(num_edges: int, num_ops: int) -> torch.Tensor:
    """Every cell as a (num_ops**num_edges, num_edges) table of op indices, first edge most significant
    (AutoDL's `Structure.gen_all` order on NB201)."""
    if num_ops**num_edges > MAX_CELLS:
        raise ValueError(f"{num_ops}^{num_edges} cells are too many to enumerate (at most {MAX_CELLS})")
    return torch.cartesian_prod(*[torch.arange(num_ops)] * num_edges).reshape(-1, num_edges)


def cell_log_probs(alpha: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """log p(a) = Σ_e log_softmax(α_e)[a_e] of every row of `cells` (float64)."""
    log_p = torch.log_softmax(alpha.detach().double().cpu(), dim=-1)
    return log_p[torch.arange(cells.shape[1]), cells].sum(dim=1)


def top_cells(alpha: torch.Tensor, cells: torch.Tensor, k: int) -> torch.Tensor:
    """The k rows of `cells` most probable under α, most probable first; ties keep the enumeration order."""
    order = torch.sort(cell_log_probs(alpha, cells), descending=True, stable=True).indices
    return cells[order[:k]]


class Setn(Darts):
    """SETN: uniform single-path weight steps, DARTS α steps, the cell picked among α's top candidates by
    their shared-weight accuracy on the valid half."""

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(model, space, cfg, generator)
        check_per_edge_space(space, "SETN")
        self.select_num = cfg.option("select_num")
        self.select_batch_size = cfg.option("select_batch_size")
        self.select_every_epoch = cfg.option("select_every_epoch")
        for name, value in (("select_num", self.select_num), ("select_batch_size", self.select_batch_size)):
            if value < 1:
                raise ValueError(f"SETN option {name} = {value}: it must be at least 1")
        self.kind = space.kinds[0]
        self.cells = enumerate_cells(space.num_edges, space.num_ops)
        # The uniform weight-step paths: their own stream, seeded from the α draw's generator and checkpointed.
        seed = int(torch.randint(0, 2**62, (), generator=generator)) if generator is not None else 0
        self.sampler = torch.Generator().manual_seed(seed)
        self.selected: tuple[int, ...] | None = None
        self.images: Any = None
        self.data_generator: torch.Generator | None = None

    def attach_data(self, images: Any, generator: torch.Generator) -> None:
        """The valid half the selections measure on, and the (checkpointed) generator that shuffles it."""
        self.images, self.data_generator = images, generator

    # ------------------------------------------------------------------ the two steps
    def uniform_path(self) -> SampledPath:
        """One op per edge, each uniform over all ops (AutoDL's `dync_genotype(True)`)."""
        index = torch.randint(0, self.space.num_ops, (self.space.num_edges,), generator=self.sampler)
        return fixed_path(index.tolist(), self.space.num_ops, self.alphas[0].device)

    def weight_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, logits = self.loss(x, y, weights={self.kind: self.uniform_path()})
        loss.backward()
        return loss, logits

    def forward_weights(self, training: bool = True) -> Any:
        """The α step's DARTS mixture (softmax α); evaluation runs the current cell as a single path."""
        if training:
            return self.arch_weights()
        return {self.kind: fixed_path(self.current_cell(), self.space.num_ops, self.alphas[0].device)}

    # ------------------------------------------------------------------ selection
    def current_cell(self) -> tuple[int, ...]:
        """The latest selection, or α's argmax per edge before the first."""
        if self.selected is not None:
            return self.selected
        return tuple(self.alphas[0].detach().argmax(dim=-1).tolist())

    def select(self) -> tuple[tuple[int, ...], float]:
        """AutoDL's `get_best_arch`: the best of α's `select_num` most probable cells on one valid batch each;
        (the cell, its accuracy in percent)."""
        if self.images is None:
            raise RuntimeError("SETN selects on the valid half: call attach_data(images, generator) first")
        candidates = top_cells(self.alphas[0], self.cells, self.select_num).tolist()
        stream = BatchStream(self.images, self.select_batch_size, False, self.data_generator)
        device = self.alphas[0].device
        paths = [fixed_path(cell, self.space.num_ops, device) for cell in candidates]
        best, acc = best_of(self.model, self.kind, paths, stream)
        return tuple(candidates[best]), acc

    def genotype(self) -> Genotype:
        mask = torch.zeros(self.space.num_edges, self.space.num_ops)
        mask[torch.arange(self.space.num_edges), torch.tensor(self.current_cell())] = 1.0
        return self.space.genotype_from_masks({self.kind: mask})

    def end_epoch(self, epochs_done: int, iim_batches: Any) -> dict[str, Any]:
        record = super().end_epoch(epochs_done, iim_batches)
        record["selected_valid_acc"] = None
        if self.select_every_epoch or epochs_done >= self.epochs:
            self.selected, record["selected_valid_acc"] = self.select()
        return record

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        selected = None if self.selected is None else list(self.selected)
        return {**super().state_dict(), "sampler": self.sampler.get_state(), "selected": selected}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.sampler.set_state(state["sampler"])
        self.selected = None if state["selected"] is None else tuple(int(i) for i in state["selected"])
