"""DARTS, Λ-DARTS and S-DARTS on the DARTS (NASNet-like) space (spec §2, §3.5, §4, §5).

The bi-level loop is `BilevelDarts` and the Λ-DARTS weight step is `LambdaDarts`, shared with NB201; this
module only says what the space changes:
- α is two (14, 8) tensors, `alpha_normal` and `alpha_reduce`, each shared by its kind's cells; the cells
  mix each edge by the softmax over its 8 ops.
- The genotype is the standard DARTS derivation (`derive_darts_cell`): per node, the two input edges whose
  best non-`none` weight is largest, and on each its best non-`none` op.
- α stays outside `model.parameters()`, as in the original DARTS and Λ-DARTS's DARTS-space code, so the
  weight step's clip sees the weights only (AutoDL's NB201 code also counts α; see `clip_alpha`).
- Λ-DARTS regularises the normal cells only (reduction-cell v = 0), as Λ-DARTS's DARTS-space code does.
- S-DARTS shrinks each kind's mask per node, keeping 2, ranked by α.

I-DARTS on this space is `IsDartsDartsSpace` with one shrink step (`shrink_steps=1`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from isdarts.search.darts_method import Batches, BilevelDarts
from isdarts.search.lambda_darts import LambdaDarts
from isdarts.search.shrink import shrink_epochs, shrink_step, step_at
from isdarts.spaces.darts_genotype import DARTS_DEFAULT_CONCAT, DARTS_NUM_NODES, DartsGenotype
from isdarts.spaces.darts_ops import DARTS_SEARCH_OPS, SEARCH_TO_EVAL
from isdarts.spaces.darts_supernet import CELL_KINDS, DARTS_EDGES, NONE_OP, NUM_EDGES, NUM_OPS, DartsSupernet

KEEP = 2  # inputs per node of a DARTS cell

Cell = tuple[tuple[tuple[str, int], ...], ...]


def derive_darts_cell(weights: torch.Tensor) -> Cell:
    """The standard DARTS derivation of one cell from its (14, 8) op weights, in evaluation op names.

    Per node: rank its input edges by their largest non-`none` weight (stable, so ties go to the lower
    input j), keep the top 2, and on each the non-`none` op with the largest weight (ties: lower op index).
    The pairs are listed strongest edge first, as DARTS does. `none` is never picked.
    """
    rows = weights.detach().cpu().double().tolist()
    candidates = [o for o in range(NUM_OPS) if o != NONE_OP]
    nodes = []
    for i in range(DARTS_NUM_NODES):
        edges = [(j, DARTS_EDGES.index(f"{i}<-{j}")) for j in range(2 + i)]
        best = {edge: max(candidates, key=lambda o, e=edge: rows[e][o]) for _, edge in edges}
        ranked = sorted(edges, key=lambda je: -rows[je[1]][best[je[1]]])
        nodes.append(tuple((SEARCH_TO_EVAL[DARTS_SEARCH_OPS[best[edge]]], j) for j, edge in ranked[:KEEP]))
    return tuple(nodes)


def derive_darts_genotype(normal: torch.Tensor, reduce: torch.Tensor) -> DartsGenotype:
    """Both cells by `derive_darts_cell`, concatenating all four nodes."""
    concat = DARTS_DEFAULT_CONCAT
    return DartsGenotype(derive_darts_cell(normal), concat, derive_darts_cell(reduce), concat)


class DartsDartsSpace(BilevelDarts):
    """DARTS (1st or 2nd order) on the DARTS space; defaults are the DARTS-CIFAR search settings.

    Same surface as DartsNb201: `train_step(x_train, y_train, x_valid, y_valid)`, `end_epoch` records
    {"alpha": {"normal", "reduce"}} and the mean α-step loss, `genotype()` is always defined.
    arch_first=None means what it means on NB201 (AutoDL V1/V2): weight step first for order 1, α step
    first for order 2; pass True for the original DARTS order (α first at both orders).
    """

    name = "darts"
    kinds = CELL_KINDS
    clip_alpha = False

    def __init__(
        self,
        model: DartsSupernet,
        *,
        epochs: int,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        arch_lr: float = 3e-4,
        arch_betas: tuple[float, float] = (0.5, 0.999),
        arch_weight_decay: float = 1e-3,
        order: int = 1,
        arch_first: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            model,
            [(NUM_EDGES, NUM_OPS)] * len(CELL_KINDS),
            epochs=epochs,
            lr=lr,
            lr_min=lr_min,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            arch_lr=arch_lr,
            arch_betas=arch_betas,
            arch_weight_decay=arch_weight_decay,
            order=order,
            arch_first=arch_first,
            generator=generator,
        )
        self.model: DartsSupernet = model

    @property
    def alpha_normal(self) -> nn.Parameter:
        return self.alphas[0]

    @property
    def alpha_reduce(self) -> nn.Parameter:
        return self.alphas[1]

    def arch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(normal, reduce) mixing weights: softmax over all 8 ops of each edge."""
        normal, reduce = (torch.softmax(a, dim=-1) for a in self.alphas)
        return normal, reduce

    def genotype(self) -> DartsGenotype:
        """The standard DARTS derivation of the current mixing weights (spec §5)."""
        with torch.no_grad():
            return derive_darts_genotype(*self.arch_weights())


class LambdaDartsDartsSpace(LambdaDarts, DartsDartsSpace):
    """Λ-DARTS on the DARTS space: per-cell clones of the normal weights, only the normal cells regularised.

    `epsilon` is ε0 (the probabilities move by ε0 per side) and `lam` the final λ of the linear ramp; the
    defaults are Λ-DARTS's DARTS-space script, which also takes the α step before the weight step. Other
    keyword arguments (epochs is required) go to DartsDartsSpace.
    """

    name = "lambda_darts"

    def __init__(
        self,
        model: DartsSupernet,
        *,
        regulariser: str = "corr",
        lam: float = 0.125,
        epsilon: float = 1e-4,
        arch_first: bool = True,
        **darts_kwargs: Any,
    ) -> None:
        super().__init__(model, arch_first=arch_first, **darts_kwargs)
        self._init_lambda(regulariser, lam, epsilon)

    def regularised_probs(self, p: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return p[0], self.model.num_cells("normal")

    def with_cell_weights(
        self, p: tuple[torch.Tensor, torch.Tensor], cells: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        # The reduction cells keep the shared p: their v is 0, so neither pass perturbs them.
        return list(cells), p[1]


def alive_per_node(mask: torch.Tensor, subsets: Sequence[Sequence[tuple[int, int]]]) -> list[int]:
    """How many (edge, op) candidates of each node the mask keeps."""
    rows = mask.detach().cpu().tolist()
    return [sum(rows[e][o] > 0.5 for e, o in subset) for subset in subsets]


class SDartsDartsSpace(DartsDartsSpace):
    """S-DARTS on the DARTS space: DARTS α mixed by a masked softmax, shrunk per node by α (IS-DARTS schedule).

    Each scheduled step shrinks the normal and the reduction mask separately: in every node it masks the
    ceil((alive - 2) / steps left) alive (edge, op) candidates with the smallest α, so 2 survive the last
    step. Other keyword arguments (epochs is required) go to DartsDartsSpace.
    """

    name = "sdarts"

    def __init__(
        self, model: DartsSupernet, *, shrink_steps: int = 7, shrink_interval: int = 3, **darts_kwargs: Any
    ) -> None:
        super().__init__(model, **darts_kwargs)
        self.schedule = shrink_epochs(self.epochs, shrink_steps, shrink_interval)
        self.subsets = model.node_subsets()

    def arch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax over each edge's alive ops (masked logits -inf); an edge with no alive op mixes with zeros."""
        normal, reduce = (
            self._masked_softmax(a, self.model.get_mask(kind)) for kind, a in zip(CELL_KINDS, self.alphas, strict=True)
        )
        return normal, reduce

    @staticmethod
    def _masked_softmax(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        masked = mask == 0
        # Node-wise shrinking can mask a whole edge; an all -inf row would give NaN weights and, through the
        # softmax backward, NaN α gradients. Such a row takes its plain softmax times the all-zero mask row.
        dead = masked.all(dim=-1, keepdim=True)
        weights = torch.softmax(alpha.masked_fill(masked & ~dead, float("-inf")), dim=-1)
        return weights * mask.to(weights.dtype)

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches]) -> dict[str, Any]:
        record = super().end_epoch(epochs_done, iim_batches)
        step = step_at(epochs_done, self.schedule)
        if step is None:
            return record
        for kind, alpha in zip(CELL_KINDS, self.alphas, strict=True):
            # shrink_step removes the largest score, so rank by -α to remove the smallest α.
            result = shrink_step(
                self.model.get_mask(kind),
                -alpha.detach().double(),
                self.subsets,
                keep=KEEP,
                steps=len(self.schedule),
                step=step,
            )
            self.model.set_mask(kind, result.mask)
            record["pruned"][kind] = [[DARTS_EDGES[e], DARTS_SEARCH_OPS[o]] for e, o in result.pruned]
        record["shrink_step"] = step
        return record

    @property
    def shrinking_done(self) -> bool:
        """True once every node of both kinds is down to its two survivors."""
        return all(n <= KEEP for kind in CELL_KINDS for n in alive_per_node(self.model.get_mask(kind), self.subsets))

    def genotype(self) -> DartsGenotype:
        """The survivors once shrinking is done (`none` included if it survived: S-DARTS ranks by α alone);
        before that, the DARTS derivation on the masked weights. Alive ops outweigh masked ones (weight 0),
        so it picks alive ops unless a node has fewer than 2 edges with an alive non-`none` op."""
        if self.shrinking_done:
            return self.model.genotype_from_masks()
        return super().genotype()
