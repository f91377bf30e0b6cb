"""β-DARTS (FAMILY.md "## 2. β-DARTS"): the beta-decay loss L_β and its gradient, the λ ramp, the penalty in the α
loss only, `none` excluded on request, the step order and options."""

import math

import pytest
import torch
from method_helpers import random_batches as batches

from isdarts.config import ArchConfig, SearchConfig
from isdarts.config.paper import paper_mismatches
from isdarts.search.beta_darts import BetaDarts, beta_loss, lambda_at
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")
SPACES = {"nb201": (NB201, Nb201Supernet), "darts": (DARTS_SPACE, DartsSupernet)}


def cfg(space: str = "nb201", **options) -> SearchConfig:
    return SearchConfig(space=space, method="beta_darts", C=4, N=1, arch=ArchConfig(lr=0.01), epochs=100,
                        options=options)


def method(space: str = "nb201", seed: int = 0, **options) -> BetaDarts:
    torch.manual_seed(seed)
    space_obj, cls = SPACES[space]
    return BetaDarts(cls(4, 1), space_obj, cfg(space, **options), torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- L_β
def test_beta_loss_at_zero_is_log_ops_and_shifts_with_a_constant():
    assert beta_loss([torch.zeros(6, 5)]).item() == pytest.approx(math.log(5))
    alphas = [torch.randn(14, 8), torch.randn(14, 8)]
    for reduce in ("mean_all_rows", "sum_of_means"):
        shifted = beta_loss([a + 0.7 for a in alphas], reduce=reduce)
        kinds = 1 if reduce == "mean_all_rows" else 2
        torch.testing.assert_close(shifted, beta_loss(alphas, reduce=reduce) + 0.7 * kinds)
    per_kind = [torch.logsumexp(a, -1).mean() for a in alphas]
    torch.testing.assert_close(beta_loss(alphas, reduce="sum_of_means"), per_kind[0] + per_kind[1])
    torch.testing.assert_close(beta_loss(alphas), (per_kind[0] + per_kind[1]) / 2)  # 14 rows each
    with pytest.raises(ValueError, match="reduce"):
        beta_loss(alphas, reduce="max")


def test_the_gradient_is_softmax_over_the_number_of_rows():
    alphas = [torch.randn(14, 8, requires_grad=True), torch.randn(14, 8, requires_grad=True)]
    grads = torch.autograd.grad(beta_loss(alphas), alphas)
    for a, g in zip(alphas, grads, strict=True):
        torch.testing.assert_close(g, torch.softmax(a.detach(), -1) / 28)


def test_masked_ops_take_no_part():
    mask = torch.ones(14, 8)
    mask[:, 0] = 0
    assert beta_loss([torch.zeros(14, 8)], [mask]).item() == pytest.approx(math.log(7))
    alpha = torch.randn(14, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(beta_loss([alpha], [mask]), [alpha])
    assert bool((grad[:, 0] == 0).all())


def test_an_sgd_step_on_beta_loss_lowers_the_row_maximum_the_most():
    alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)).requires_grad_()
    before = alpha.detach().clone()
    optimizer = torch.optim.SGD([alpha], lr=1.0)
    beta_loss([alpha]).backward()
    optimizer.step()
    drop = before - alpha.detach()
    assert bool((drop > 0).all())
    assert torch.equal(drop.argmax(-1), before.argmax(-1))


# ---------------------------------------------------------------- the schedule and the method
def test_lambda_ramps_by_the_hard_coded_hundred():
    assert [lambda_at(t, 50.0, 100) for t in (0, 10, 49, 99)] == [0.0, 5.0, 24.5, 49.5]
    m = method()
    for t, want in ((0, 0.0), (10, 5.0), (49, 24.5), (99, 49.5)):
        m.set_epoch(t)
        assert m.lam == want


def test_options_defaults_refusals_and_paper_rows():
    options = cfg("darts").options
    assert {k: options[k] for k in ("lambda_max", "ramp_epochs", "reduce", "include_none", "step_order")} == {
        "lambda_max": 50.0, "ramp_epochs": 100, "reduce": "mean_all_rows", "include_none": True,
        "step_order": "alpha_first"}
    with pytest.raises(ValueError, match="ramp_epochs"):
        method(ramp_epochs=0)
    assert cfg(order=2).order == 1  # a row constant: first order only
    nb201 = SearchConfig(space="nb201", method="beta_darts", C=16, N=5, epochs=100, nesterov=False,
                         weight_decay=3e-4, shuffle=True, arch=ArchConfig(), train_portion=0.5)
    darts = SearchConfig(space="darts", method="beta_darts", C=16, N=2, epochs=50, nesterov=False, weight_decay=3e-4,
                         shuffle=True, arch=ArchConfig(), train_portion=0.5)
    assert paper_mismatches(nb201) == [] and paper_mismatches(darts) == []


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_the_alpha_gradient_gains_exactly_lambda_softmax_over_rows(space):
    on, off = method(space), method(space, lambda_max=0.0)
    for m in (on, off):
        m.set_epoch(10)
    data = batches(2)
    with_penalty, plain = (m.arch_grads(*data[0], *data[1]) for m in (on, off))
    rows = 6 if space == "nb201" else 28
    for g_on, g_off, alpha in zip(with_penalty, plain, on.alphas, strict=True):
        torch.testing.assert_close(g_on - g_off, 5.0 * torch.softmax(alpha.detach(), -1) / rows)


def test_the_weight_step_gets_no_gradient_from_beta_loss():
    on, off = method(), method(lambda_max=0.0)
    data = batches(1)[0]
    for m in (on, off):
        m.set_epoch(50)
        m._weight_step(*data)
    for a, b in zip(on.weights, off.weights, strict=True):
        assert torch.equal(a, b)


def test_the_alpha_step_comes_first_and_the_record_carries_lambda_and_beta_loss():
    m = method()
    order = []
    real_arch, real_weight = m._arch_step, m._weight_step
    m._arch_step = lambda *a: order.append("alpha") or real_arch(*a)
    m._weight_step = lambda *a: order.append("w") or real_weight(*a)
    m.set_epoch(2)
    data = batches(2)
    m.train_step(*data[0], *data[1])
    assert order == ["alpha", "w"]
    record = m.end_epoch(3, None)
    assert record["lambda"] == 1.0 and record["arch_loss"] is not None
    assert record["beta_loss"] == pytest.approx(beta_loss(m.alphas).item(), abs=1e-2)


def test_without_none_the_darts_space_mixes_and_decays_seven_ops():
    m = method("darts", include_none=False)
    for kind in m.kinds:
        assert m.model.get_mask(kind)[:, 0].sum() == 0
        assert bool((m.arch_weights()[kind][:, 0] == 0).all())
    with torch.no_grad():
        for alpha in m.alphas:
            alpha.zero_()
    assert m.penalty_value().item() == pytest.approx(math.log(7))
    assert method("darts").penalty_value().item() == pytest.approx(math.log(8), abs=1e-2)
