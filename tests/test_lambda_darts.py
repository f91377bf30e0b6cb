"""Λ-DARTS (spec §5): regulariser values and closed-form gradients, the finite-difference weight term, λ ramp."""

import itertools

import pytest
import torch
from torch.func import functional_call
from torch.nn.functional import cross_entropy

from isdarts.config import ArchConfig, SearchConfig
from isdarts.search.darts import Darts
from isdarts.search.lambda_darts import (
    LambdaDarts,
    corr_regulariser_grad,
    lambda_at,
    layer_alignment,
    sign_alignment,
    signcorr_regulariser_grad,
)
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_value(grads, kind: str) -> torch.Tensor:
    """The regulariser written pair by pair, straight from its definition (autograd-friendly)."""
    terms = []
    for gi, gj in itertools.combinations([g.reshape(-1) for g in grads], 2):
        if kind == "corr":
            terms.append(gi @ gj / (gi.norm() * gj.norm()))
        else:
            terms.append(gi @ gj / (gi.abs() @ gj.abs()))
    return torch.stack(terms).mean()


def random_cell_grads(n_cells: int = 15, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    grads = [torch.randn(6, 5, generator=gen, dtype=torch.float64) for _ in range(n_cells)]
    for g in grads:
        g[:, 0] = 0.0  # `none` never reaches the loss, so its column of g_l is exactly zero
    return grads


@pytest.mark.parametrize(
    ("kind", "value_fn", "grad_fn"),
    [("corr", layer_alignment, corr_regulariser_grad), ("signcorr", sign_alignment, signcorr_regulariser_grad)],
)
def test_regulariser_value_and_closed_form_gradient_match_autograd(kind, value_fn, grad_fn):
    grads = [g.requires_grad_() for g in random_cell_grads()]
    reference = reference_value(grads, kind)
    expected_v = torch.autograd.grad(reference, grads)
    torch.testing.assert_close(value_fn([g.detach() for g in grads]), reference.detach(), rtol=1e-12, atol=1e-14)
    got_v = grad_fn([g.detach() for g in grads])
    assert [v.shape for v in got_v] == [g.shape for g in grads]
    for got, want in zip(got_v, expected_v, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)


def test_alignment_of_identical_and_opposite_gradients():
    g = torch.randn(6, 5, dtype=torch.float64)
    assert layer_alignment([g, 2 * g, 3 * g]).item() == pytest.approx(1.0)
    assert layer_alignment([g, -g]).item() == pytest.approx(-1.0)
    assert sign_alignment([g, 2 * g]).item() == pytest.approx(1.0)
    # Perfectly aligned gradients are a maximum: nothing left to push.
    assert all(v.abs().max() < 1e-12 for v in corr_regulariser_grad([g, 2 * g, 3 * g]))
    with pytest.raises(ValueError, match="at least 2"):
        layer_alignment([g])


def lambda_cfg(method: str = "lambda_darts", **overrides) -> SearchConfig:
    """Λ-DARTS (or plain DARTS) as the NB201 script runs it: λ 0.25, ε0 1e-4, weight decay 5e-4, 3 epochs."""
    options = {"regulariser": overrides.pop("regulariser", "corr"), "lam": 0.25, "epsilon": 1e-4,
               **overrides.pop("options", {})}
    return SearchConfig(method=method, arch=ArchConfig(), **{"epochs": 3, "weight_decay": 5e-4, **overrides},
                        options=options if method == "lambda_darts" else {})


def test_lambda_ramps_linearly_from_zero_to_lambda():
    assert [lambda_at(t, 5, 0.25) for t in range(5)] == [0.0, 0.0625, 0.125, 0.1875, 0.25]
    assert lambda_at(0, 1, 0.25) == 0.25  # a one-epoch run has no ramp
    method = LambdaDarts(Nb201Supernet(channels=4, cells_per_stage=1), NB201, lambda_cfg(epochs=50))
    method.set_epoch(49)
    assert method.lam_t == 0.25


def make_method(regulariser: str = "corr", **kwargs) -> LambdaDarts:
    torch.manual_seed(0)
    model = Nb201Supernet(channels=4, cells_per_stage=1).double()
    method = LambdaDarts(model, NB201, lambda_cfg(regulariser=regulariser, **kwargs))
    with torch.no_grad():
        method.alphas[0].normal_()
    return method


def batch(seed: int = 0, n: int = 8):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=gen, dtype=torch.float64), torch.randint(0, 10, (n,), generator=gen)


@pytest.mark.parametrize("kind", ["corr", "signcorr"])
def test_weight_correction_approximates_minus_the_regulariser_weight_gradient(kind):
    method = make_method(kind)
    x, y = batch()
    model = method.model
    names = [name for name, _ in model.named_parameters()]
    w = [p.detach().clone().requires_grad_() for p in model.parameters()]
    p = method.arch_weights()["cell"].detach()
    clones = [p.clone().requires_grad_() for _ in range(model.num_search_cells)]
    _, logits = functional_call(model, dict(zip(names, w, strict=True)), (x,), {"weights": {"cell": clones}})
    cell_grads = torch.autograd.grad(cross_entropy(logits, y), clones, create_graph=True)
    # -∇_w R by double backprop through the per-cell gradients; `none`'s column makes some weights unused.
    exact = torch.autograd.grad(reference_value(cell_grads, kind), w, allow_unused=True)
    minus_grad_r = torch.cat(
        [(torch.zeros_like(t) if g is None else -g).reshape(-1) for g, t in zip(exact, w, strict=True)]
    )
    got = torch.cat([c.reshape(-1) for c in method.alignment_correction(x, y, [g.detach() for g in cell_grads])])
    cosine = (got @ minus_grad_r / (got.norm() * minus_grad_r.norm())).item()
    assert cosine > 0.999  # the sign: adding the correction descends on -R, i.e. raises the alignment
    # Central difference with |δ| = ε0 = 1e-4 in probability space: O(ε0²) error, measured ~5e-8 here in
    # float64 even with ReLU (so small a step flips no unit). 1e-4 is loose on purpose: a flip would add a
    # jump/(2ε) term, which is the method's own approximation error, not a bug.
    assert ((got - minus_grad_r).norm() / minus_grad_r.norm()).item() < 1e-4


def test_weight_step_adds_lambda_times_the_correction_and_is_plain_darts_at_lambda_zero():
    x, y = batch()
    method = make_method(grad_clip=0.0, momentum=0.0, nesterov=False)
    method.set_epoch(2)  # λ_t = λ in the last of 3 epochs
    p = method.arch_weights()["cell"].detach()
    cell_grads = [p.clone().requires_grad_() for _ in range(method.model.num_search_cells)]
    loss, _ = method.loss(x, y, {"cell": cell_grads})
    plain = torch.autograd.grad(loss, method.weights, retain_graph=True, allow_unused=True)
    cell_grads = torch.autograd.grad(loss, cell_grads)
    correction = method.alignment_correction(x, y, cell_grads)
    method._weight_step(x, y)  # the SGD step leaves .grad in place for us to read
    for w, g, c in zip(method.weights, plain, correction, strict=True):
        want = (torch.zeros_like(w) if g is None else g) + 0.25 * c
        got = torch.zeros_like(w) if w.grad is None else w.grad
        torch.testing.assert_close(got, want)
    assert method.end_epoch(3, lambda: [])["alignment"] is not None

    # In epoch 0 (λ_t = 0) the weight step is exactly plain DARTS's.
    lam, darts = make_method(), Darts(make_method().model, NB201, lambda_cfg("darts1"))
    with torch.no_grad():
        darts.alphas[0].copy_(lam.alphas[0])
    for method in (lam, darts):
        method.set_epoch(0)
        method._weight_step(x, y)
    for a, b in zip(lam.weights, darts.weights, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def smooth_method(gradient: str, kind: str = "corr") -> LambdaDarts:
    """Λ-DARTS on a float64 NB201 supernet whose ReLUs are Softplus: R(w) is smooth, so finite differences of
    it are trustworthy to many digits."""
    torch.manual_seed(0)
    model = Nb201Supernet(channels=4, cells_per_stage=1, fused=False).double()
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, torch.nn.Softplus())
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    method = LambdaDarts(model, NB201, lambda_cfg(regulariser=kind, grad_clip=0.0, momentum=0.0, nesterov=False,
                                                  options={"regulariser_gradient": gradient}))
    with torch.no_grad():
        method.alphas[0].normal_()
    method.set_epoch(2)  # λ_t = 0.25
    return method


def regulariser_of_weights(method: LambdaDarts, weights, x, y, kind: str) -> torch.Tensor:
    """R(w): the alignment of the per-cell α-gradients at weights `weights` (a list like model.parameters())."""
    model = method.model
    names = [name for name, _ in model.named_parameters()]
    p = method.arch_weights()["cell"].detach()
    clones = [p.clone().requires_grad_() for _ in range(model.num_search_cells)]
    _, logits = functional_call(model, dict(zip(names, weights, strict=True)), (x,), {"weights": {"cell": clones}})
    grads = torch.autograd.grad(cross_entropy(logits, y), clones)
    return reference_value(grads, kind)


def step_gradient(method: LambdaDarts, x, y) -> list[torch.Tensor]:
    method.w_optimizer.zero_grad(set_to_none=True)
    method.weight_backward(x, y)
    return [torch.zeros_like(w) if w.grad is None else w.grad.clone() for w in method.weights]


@pytest.mark.parametrize("kind", ["corr", "signcorr"])
def test_exact_regulariser_gradient_matches_a_float64_finite_difference_of_r(kind):
    method = smooth_method("exact", kind)
    x, y = batch()
    exact = step_gradient(method, x, y)
    lam_t, method.lam_t = method.lam_t, 0.0  # λ_t = 0: ∇_w L alone, no correction
    plain = step_gradient(method, x, y)
    method.lam_t = lam_t
    grad_r = [(p - e) / lam_t for p, e in zip(plain, exact, strict=True)]  # exact = ∇L - λ ∇R
    assert sum(g.abs().sum() for g in grad_r) > 0
    gen = torch.Generator().manual_seed(1)
    direction = [torch.randn(w.shape, generator=gen, dtype=w.dtype) for w in method.weights]
    h = 1e-5
    w0 = [w.detach() for w in method.weights]
    r_plus = regulariser_of_weights(method, [w + h * d for w, d in zip(w0, direction, strict=True)], x, y, kind)
    r_minus = regulariser_of_weights(method, [w - h * d for w, d in zip(w0, direction, strict=True)], x, y, kind)
    numeric = ((r_plus - r_minus) / (2 * h)).item()
    analytic = sum((g * d).sum() for g, d in zip(grad_r, direction, strict=True)).item()
    assert abs(analytic - numeric) <= 1e-6 * max(1.0, abs(numeric)), (analytic, numeric)


def test_on_a_smooth_network_the_official_finite_difference_matches_the_exact_gradient():
    x, y = batch()
    official = torch.cat([g.reshape(-1) for g in step_gradient(smooth_method("finite_difference"), x, y)])
    exact = torch.cat([g.reshape(-1) for g in step_gradient(smooth_method("exact"), x, y)])
    assert not torch.equal(official, exact)  # two different computations
    assert ((official - exact).norm() / exact.norm()).item() < 1e-5


def test_exact_gradient_is_an_option_with_the_official_default():
    from isdarts.registry import method_spec

    option = {o.name: o for o in method_spec("lambda_darts").options}["regulariser_gradient"]
    assert option.default == "finite_difference" and option.choices == ("finite_difference", "exact")
    with pytest.raises(ValueError, match="regulariser_gradient"):
        LambdaDarts(Nb201Supernet(channels=4, cells_per_stage=1), NB201,
                    SearchConfig(method="lambda_darts", arch=ArchConfig(), epochs=3, options={
                        "regulariser": "corr", "lam": 0.25, "epsilon": 1e-4, "regulariser_gradient": "autograd"}))
