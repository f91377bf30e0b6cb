"""DARTS, Λ-DARTS and S-DARTS on the DARTS space (spec §2, §3.5, §4, §5): the second-order hypergradient,
the normal-cell-only alignment term, the DARTS genotype derivation, node-wise S-DARTS shrinking, state."""

import io
import itertools
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.functional import cross_entropy

from isdarts.config import ArchConfig, SearchConfig, ShrinkConfig
from isdarts.search.darts import Darts
from isdarts.search.lambda_darts import LambdaDarts
from isdarts.search.sdarts import SDarts
from isdarts.search.shrink import removals
from isdarts.spaces.common import alive_per_node
from isdarts.spaces.darts.ops import DARTS_SEARCH_OPS, SEARCH_TO_EVAL
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import (
    CELL_KINDS,
    DARTS_EDGES,
    NONE_OP,
    NUM_EDGES,
    NUM_OPS,
    DartsSupernet,
    derive_darts_cell,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# Spec §3.3 table for S = 7: alive candidates per node after each step.
ALIVE_S7 = [
    [14, 12, 10, 8, 6, 4, 2],
    [20, 17, 14, 11, 8, 5, 2],
    [27, 22, 18, 14, 10, 6, 2],
    [34, 28, 22, 17, 12, 7, 2],
]

EVAL_TO_SEARCH = {v: k for k, v in SEARCH_TO_EVAL.items()}


def darts_cfg(method: str = "darts1", **overrides) -> SearchConfig:
    """A DARTS-space search: the DARTS-CIFAR settings, the default α optimiser and Λ-DARTS's λ 0.125, ε0 1e-4."""
    options = {"regulariser": "corr", "lam": overrides.pop("lam", 0.125), "epsilon": 1e-4}
    return SearchConfig(space="darts", method=method, arch=ArchConfig(), **overrides,
                        options=options if method == "lambda_darts" else {})


def smooth(model: nn.Module) -> nn.Module:
    """Swap every ReLU for a Softplus and every max pool for an average pool, so the loss is smooth at the
    scale of the second-order finite difference (|R v| = 0.01 in weight space).

    Both are kinks: a unit crossing zero, or a 3x3 window whose argmax changes, adds a jump in grad_alpha L
    that the central difference divides by 2R. With only the ReLUs swapped, the max pools alone put the
    difference off by ~80% of the gradient on this net; with both swapped it agrees to ~4e-5. That is a
    property of kinked nets, not of the method, which never looks inside the ops. Swapped modules only act
    in the per-op reference cells (the fused cells apply ReLU themselves), so smoothed models use those.
    """
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, name, nn.Softplus())
            elif isinstance(child, nn.MaxPool2d):
                setattr(module, name, nn.AvgPool2d(3, child.stride, 1, count_include_pad=False))
    return model


def tiny_model(seed: int = 0, *, smoothed: bool = False, channels: int = 2) -> DartsSupernet:
    """[N, R, N, R, N]: 3 normal and 2 reduction cells, float64."""
    torch.manual_seed(seed)
    model = DartsSupernet(channels=channels, cells_per_stage=1, fused=not smoothed)
    return (smooth(model) if smoothed else model).double()


def tiny_batches(seed: int = 0, n: int = 4, size: int = 8):
    gen = torch.Generator().manual_seed(seed)
    x = [torch.randn(n, 3, size, size, generator=gen, dtype=torch.float64) for _ in range(2)]
    y = [torch.randint(0, 10, (n,), generator=gen) for _ in range(2)]
    return x[0], y[0], x[1], y[1]


def randomise_alpha(method, seed: int = 0) -> None:
    """Away from the near-uniform init, so every op carries a different weight."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for alpha in method.alphas:
            alpha.copy_(torch.randn(alpha.shape, generator=gen, dtype=alpha.dtype))


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def param_and_buffer_state(model: nn.Module, params):
    """functional_call state: `params` for the parameters, copies of the buffers (the model's stay untouched)."""
    state = {name: b.clone() for name, b in model.named_buffers()}
    state.update(zip((name for name, _ in model.named_parameters()), params, strict=True))
    return state


# ---------------------------------------------------------------------------------------------- DARTS


def exact_hypergradient(method: Darts, batches, xi, momentum, wd):
    """d/d(alpha_normal, alpha_reduce) L_val(w'(alpha), alpha), w' one unrolled SGD step, by double backprop;
    and, flattened beside it, the partial derivative alone (w' held fixed, no Hessian term)."""
    x_tr, y_tr, x_val, y_val = batches
    model = method.model
    w = [p.detach().clone().requires_grad_() for p in model.parameters()]
    mix = {"weights": dict(zip(CELL_KINDS, (a.softmax(-1) for a in method.alphas), strict=True))}
    _, logits = functional_call(model, param_and_buffer_state(model, w), (x_tr,), mix)
    g = torch.autograd.grad(cross_entropy(logits, y_tr), w, create_graph=True)
    bufs = [method.w_optimizer.state.get(p, {}).get("momentum_buffer") for p in model.parameters()]
    unrolled = [
        wi - xi * (gi + wd * wi + (0.0 if b is None else momentum * b)) for wi, gi, b in zip(w, g, bufs, strict=True)
    ]
    grads = []
    for params in (unrolled, [u.detach() for u in unrolled]):
        mix = {"weights": dict(zip(CELL_KINDS, (a.softmax(-1) for a in method.alphas), strict=True))}
        _, logits = functional_call(model, param_and_buffer_state(model, params), (x_val,), mix)
        grads.append(flat(torch.autograd.grad(cross_entropy(logits, y_val), method.alphas)))
    return grads[0], grads[1]


def test_second_order_arch_gradient_matches_the_exact_hypergradient():
    xi, momentum, wd = 0.5, 0.9, 1e-3  # a large xi makes the Hessian term a big part of the gradient
    method = Darts(
        tiny_model(smoothed=True), DARTS_SPACE,
        darts_cfg("darts2", epochs=2, lr=xi, momentum=momentum, nesterov=False, weight_decay=wd),
    )
    method.set_epoch(0)
    randomise_alpha(method)
    batches = tiny_batches()
    method._weight_step(*batches[:2])  # fills the momentum buffer the unrolled step reads
    exact, partial = exact_hypergradient(method, batches, xi, momentum, wd)
    got = method.arch_grads(*batches)
    assert [g.shape for g in got] == [(NUM_EDGES, NUM_OPS)] * 2
    # The central difference at w +- R v (|R v| = 0.01) has O(R^2) error, ~4e-5 here; float64 rounding is far below.
    assert ((flat(got) - exact).norm() / exact.norm()).item() < 1e-3
    # Both kinds carry signal, and dropping the Hessian term is off by far more than the tolerance.
    assert all(g.abs().max() > 0 for g in got)
    assert ((partial - exact).norm() / exact.norm()).item() > 0.05


def test_first_order_weight_step_first_clip_excludes_alpha_and_record_schema():
    method = Darts(tiny_model(), DARTS_SPACE, darts_cfg(epochs=2, grad_clip=1e-3))
    assert method.bilevel and not method.arch_first
    method.set_epoch(0)
    batches = tiny_batches()
    alpha0 = [a.detach().clone() for a in method.alphas]
    loss, n_correct = method.train_step(*batches)
    assert loss.ndim == 0 and 0 <= int(n_correct) <= 4
    assert all(not torch.equal(a, a0) for a, a0 in zip(method.alphas, alpha0, strict=True))
    # α stays outside model.parameters() (DARTS, Λ-DARTS): the clip norm is the weights' alone.
    assert flat([w.grad for w in method.weights if w.grad is not None]).norm().item() == pytest.approx(1e-3, rel=1e-6)
    record = method.end_epoch(1, lambda: [])
    assert record["iim"] is None and record["shrink_step"] is None
    assert record["pruned"] == {"normal": [], "reduce": []}
    assert set(record["alpha"]) == set(CELL_KINDS)
    for kind, alpha in zip(CELL_KINDS, method.alphas, strict=True):
        assert record["alpha"][kind] == alpha.detach().tolist()
    assert isinstance(record["arch_loss"], float)


def test_darts_derivation_on_hand_set_alpha_takes_the_top_two_edges_and_never_none():
    alpha = torch.zeros(NUM_EDGES, NUM_OPS)
    alpha[:, NONE_OP] = 9.0  # `none` dominates every edge, and must still never be picked
    # (node, input j, op, logit): per node, the strongest non-`none` op on three of its edges.
    plan = [
        (0, 1, "dua_sepc_3x3", 3.0),
        (0, 0, "skip_connect", 2.0),
        (1, 2, "max_pool_3x3", 4.0),
        (1, 0, "dil_sepc_5x5", 3.5),
        (1, 1, "avg_pool_3x3", 1.0),
        (2, 3, "dua_sepc_5x5", 2.5),
        (2, 1, "dil_sepc_3x3", 2.4),
        (2, 0, "dua_sepc_3x3", 2.3),
        (3, 4, "skip_connect", 5.0),
        (3, 2, "dua_sepc_5x5", 1.5),
        (3, 3, "max_pool_3x3", 1.4),
    ]
    for node, j, op, logit in plan:
        alpha[DARTS_EDGES.index(f"{node}<-{j}"), DARTS_SEARCH_OPS.index(op)] = logit
    cell = derive_darts_cell(torch.softmax(alpha, dim=-1))
    assert cell == (
        (("sep_conv_3x3", 1), ("skip_connect", 0)),
        (("max_pool_3x3", 2), ("dil_conv_5x5", 0)),
        (("sep_conv_5x5", 3), ("dil_conv_3x3", 1)),
        (("skip_connect", 4), ("sep_conv_5x5", 2)),
    )
    method = Darts(tiny_model(), DARTS_SPACE, darts_cfg(epochs=1))
    with torch.no_grad():
        method.alphas[0].copy_(alpha)
        method.alphas[1].copy_(alpha.roll(1, dims=1))  # shifts `none`'s 9.0 onto skip_connect
    genotype = method.genotype()
    assert genotype.normal == cell
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    assert all(op == "skip_connect" for node in genotype.reduce for op, _ in node)
    assert all(op != "none" for kind in CELL_KINDS for node in genotype.cell(kind)[0] for op, _ in node)


# ---------------------------------------------------------------------------------------------- Λ-DARTS


def pairwise_cosine(grads) -> torch.Tensor:
    """R_corr straight from its definition: the mean of cos(g_i, g_j) over pairs i < j."""
    flat_grads = [g.reshape(-1) for g in grads]
    return torch.stack([gi @ gj / (gi.norm() * gj.norm()) for gi, gj in itertools.combinations(flat_grads, 2)]).mean()


def reference_cell_grads(method: LambdaDarts, x, y, w, *, include_reduce: bool = False):
    """Per-cell dL/dA_l with graph (float64); normal cells only unless include_reduce."""
    model = method.model
    p = tuple(a.detach().softmax(-1) for a in method.alphas)
    normal = [p[0].clone().requires_grad_() for _ in range(model.num_cells("normal"))]
    reduce = [p[1].clone().requires_grad_() for _ in range(model.num_cells("reduce"))] if include_reduce else p[1]
    mix = {"weights": {"normal": normal, "reduce": reduce}}
    _, logits = functional_call(model, param_and_buffer_state(model, w), (x,), mix)
    cells = normal + (reduce if include_reduce else [])
    return torch.autograd.grad(cross_entropy(logits, y), cells, create_graph=True)


def test_lambda_alignment_and_its_weight_term_cover_the_normal_cells_only():
    lam = 0.125
    method = LambdaDarts(
        tiny_model(smoothed=True), DARTS_SPACE,
        darts_cfg("lambda_darts", epochs=3, lam=lam, grad_clip=0.0, momentum=0.0, nesterov=False, weight_decay=0.0),
    )
    assert method.arch_first
    randomise_alpha(method)
    method.set_epoch(2)  # λ_t = λ in the last of 3 epochs
    x, y, _, _ = tiny_batches()
    w = [p.detach().clone().requires_grad_() for p in method.model.parameters()]
    cell_grads = reference_cell_grads(method, x, y, w)
    assert len(cell_grads) == 3
    value = pairwise_cosine(cell_grads)
    # -∇_w R by double backprop through the normal cells' gradients; unused `none` ops leave some weights out.
    exact = torch.autograd.grad(value, w, allow_unused=True)
    minus_grad_r = flat([torch.zeros_like(t) if g is None else -g for g, t in zip(exact, w, strict=True)])
    # The test can tell: counting the reduction cells changes the regulariser.
    with_reduce = pairwise_cosine(reference_cell_grads(method, x, y, w, include_reduce=True))
    assert abs(with_reduce.item() - value.item()) > 1e-3

    correction = method.alignment_correction(x, y, [g.detach() for g in cell_grads])
    got = flat(correction)
    # Central difference with |δ| = ε0 = 1e-4 in probability space: O(ε0²) error, ~1e-8 here on the smoothed
    # net. With ReLU and max pool, this 2-channel net crosses a kink at ε0 = 1e-4 (measured: off by 100x;
    # at ε0 = 1e-6 it agrees to 1e-9): the jump / (2ε) is the method's own error, not a bug, hence smooth().
    assert ((got - minus_grad_r).norm() / minus_grad_r.norm()).item() < 1e-4

    _, logits = functional_call(
        method.model,
        param_and_buffer_state(method.model, w),
        (x,),
        {"weights": dict(zip(CELL_KINDS, (a.detach().softmax(-1) for a in method.alphas), strict=True))},
    )
    plain = torch.autograd.grad(cross_entropy(logits, y), w, allow_unused=True)
    method._weight_step(x, y)  # no clip, no momentum: .grad is exactly what the step used
    for p, g, c in zip(method.weights, plain, correction, strict=True):
        want = (torch.zeros_like(p) if g is None else g) + lam * c
        torch.testing.assert_close(torch.zeros_like(p) if p.grad is None else p.grad, want)
    record = method.end_epoch(3, lambda: [])
    assert record["lambda"] == lam
    assert record["alignment"] == pytest.approx(value.item(), rel=1e-9)


# ---------------------------------------------------------------------------------------------- S-DARTS


def test_sdarts_shrinks_each_node_by_smallest_alpha_to_two_survivors():
    method = SDarts(tiny_model(), DARTS_SPACE, darts_cfg("sdarts", epochs=8, shrink=ShrinkConfig(steps=7, interval=1)))
    assert method.schedule == [1, 2, 3, 4, 5, 6, 7]
    subsets = DARTS_SPACE.subsets
    gen = torch.Generator().manual_seed(3)
    x_tr, y_tr, x_val, y_val = tiny_batches()
    for step in range(7):
        with torch.no_grad():
            for alpha in method.alphas:
                alpha.copy_(torch.randn(alpha.shape, generator=gen, dtype=alpha.dtype))
        before = {kind: method.model.get_mask(kind).clone() for kind in CELL_KINDS}
        assert not DARTS_SPACE.shrinking_done(DARTS_SPACE.masks(method.model))
        record = method.end_epoch(step + 1, lambda: [])
        assert record["shrink_step"] == step
        for kind, alpha in zip(CELL_KINDS, method.alphas, strict=True):
            mask = method.model.get_mask(kind)
            assert alive_per_node(mask, subsets) == [counts[step] for counts in ALIVE_S7]
            pruned = {(DARTS_EDGES.index(e), DARTS_SEARCH_OPS.index(o)) for e, o in record["pruned"][kind]}
            for subset in subsets:
                alive = [c for c in subset if before[kind][c] == 1]
                gone = [c for c in alive if c in pruned]
                assert len(gone) == removals(len(alive), 2, 7, step)
                kept = [c for c in alive if c not in pruned]
                assert max(alpha[c].item() for c in gone) <= min(alpha[c].item() for c in kept)
        # Masked ops get exactly zero weight; a fully masked edge mixes zeros, and the step stays finite.
        for kind, weights in method.arch_weights().items():
            mask = method.model.get_mask(kind)
            assert bool((weights[mask == 0] == 0).all()) and bool(torch.isfinite(weights).all())
        grads = method.arch_grads(x_tr, y_tr, x_val, y_val)
        assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert DARTS_SPACE.shrinking_done(DARTS_SPACE.masks(method.model))
    assert method.genotype() == DARTS_SPACE.genotype_from_masks(DARTS_SPACE.masks(method.model))
    assert method.end_epoch(8, lambda: [])["shrink_step"] is None


def test_sdarts_genotype_before_the_end_is_the_darts_derivation_on_alive_ops():
    method = SDarts(tiny_model(), DARTS_SPACE, darts_cfg("sdarts", epochs=8, shrink=ShrinkConfig(steps=7, interval=1)))
    randomise_alpha(method, seed=5)
    for epoch in (1, 2, 3):
        method.end_epoch(epoch, lambda: [])
    genotype = method.genotype()
    assert genotype.normal == derive_darts_cell(method.arch_weights()["normal"])
    # Every pick is an alive op (at 22..10 alive per node, each node still has 2 edges with a non-none op).
    for kind in CELL_KINDS:
        mask = method.model.get_mask(kind)
        nodes, _ = genotype.cell(kind)
        for node, pairs in enumerate(nodes):
            for op, j in pairs:
                o = DARTS_SEARCH_OPS.index(EVAL_TO_SEARCH[op])
                assert mask[DARTS_EDGES.index(f"{node}<-{j}"), o] == 1


# ---------------------------------------------------------------------------------------------- state


def make(cls, seed: int):
    # S-DARTS shrinks after epochs 2 and 3.
    method = {Darts: "darts1", LambdaDarts: "lambda_darts", SDarts: "sdarts"}[cls]
    cfg = darts_cfg(method, epochs=4, momentum=0.9, lam=0.5, shrink=ShrinkConfig(steps=2, interval=1))
    return cls(tiny_model(seed), DARTS_SPACE, cfg, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cls", [Darts, LambdaDarts, SDarts])
def test_state_round_trip_resumes_identically(cls):
    batches = tiny_batches()
    a = make(cls, seed=0)
    a.set_epoch(1)
    a.train_step(*batches)
    a.end_epoch(2, lambda: [])  # S-DARTS: its first shrink step, so the masks differ from a fresh net's
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = make(cls, seed=1)  # different weights and α until the state is loaded
    b.load_state_dict(torch.load(buffer, weights_only=True))
    for method in (a, b):
        method.set_epoch(2)
        method.train_step(*batches)
    for pa, pb in zip([*a.alphas, *a.weights], [*b.alphas, *b.weights], strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    for kind in CELL_KINDS:
        assert torch.equal(a.model.get_mask(kind), b.model.get_mask(kind))
    assert a.genotype() == b.genotype()
    assert math.isfinite(a.end_epoch(3, lambda: [])["arch_loss"])


def test_bilevel_flag_marks_the_darts_family_only_and_agrees_with_the_methods_table():
    from isdarts.registry import METHODS

    for spec in METHODS.values():
        for space in spec.spaces:
            assert spec.method_class(space).bilevel is spec.bilevel
    # Single-level: IS-DARTS and I-DARTS (no α), and the methods that train α on the weights' own batch.
    assert {"isdarts", "idarts"} <= {name for name, spec in METHODS.items() if not spec.bilevel}
    assert {"darts1", "darts2", "lambda_darts", "sdarts", "gdas", "pcdarts"} <= {
        name for name, spec in METHODS.items() if spec.bilevel}
