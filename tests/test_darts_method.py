"""Plain DARTS on NB201 (spec §4): the second-order hypergradient, the step order, genotype, state."""

import io

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.functional import cross_entropy

from isdarts.config import ArchConfig, SearchConfig
from isdarts.search.darts import Darts
from isdarts.spaces.nb201.genotype import NB201_OPS
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")


ADAM_EPS = 1e-8  # torch.optim.Adam's default


def smooth(model: nn.Module) -> nn.Module:
    """Swap every ReLU for a Softplus, so the loss is smooth at the scale of the finite difference.

    With ReLU, w +- R v (|R v| = 0.01) flips some units of a 4-channel net, and each flip adds a jump of
    grad_alpha L divided by 2R: measured here, the difference is then off by 5-50x its value, while at
    |R v| = 1e-4 it agrees to 1e-9. That is a property of ReLU nets, not of this code; Softplus keeps
    the test about the method. Swapped modules only act in the per-op reference cells (the fused cells
    apply ReLU themselves), so smoothed models use those.
    """
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, name, nn.Softplus())
    return model


def tiny_batches(seed: int = 0, n: int = 8, size: int = 8):
    gen = torch.Generator().manual_seed(seed)
    x = [torch.randn(n, 3, size, size, generator=gen, dtype=torch.float64) for _ in range(2)]
    y = [torch.randint(0, 10, (n,), generator=gen) for _ in range(2)]
    return x[0], y[0], x[1], y[1]


def darts_cfg(order: int = 1, **overrides) -> SearchConfig:
    """DARTS of `order` with the default α optimiser and the NB201 script's weight decay (5e-4)."""
    return SearchConfig(method=f"darts{order}", arch=ArchConfig(), **{"epochs": 2, "weight_decay": 5e-4, **overrides})


def make_method(seed: int = 0, **kwargs) -> Darts:
    torch.manual_seed(seed)
    model = smooth(Nb201Supernet(channels=4, cells_per_stage=1, fused=False)).double()
    method = Darts(model, NB201, darts_cfg(**kwargs))
    method.set_epoch(0)  # lr = the base lr in the first epoch
    with torch.no_grad():
        method.alphas[0].normal_()  # away from the uniform init, so all ops carry different weight
    return method


def exact_hypergradient(
    method: Darts, batches, xi: float, momentum: float, wd: float, *, through_w: bool = True
) -> torch.Tensor:
    """d/dalpha L_val(w'(alpha), alpha), w' = w - xi (mu buf + grad_w L_tr(w, alpha) + wd w), by double backprop.

    through_w=False holds w' fixed: the partial derivative alone, without the Hessian term.
    """
    x_tr, y_tr, x_val, y_val = batches
    model, alpha = method.model, method.alphas[0]
    names = [name for name, _ in model.named_parameters()]
    w = [p.detach().clone().requires_grad_() for p in model.parameters()]
    mix = {"weights": {"cell": alpha.softmax(-1)}}
    _, logits = functional_call(model, dict(zip(names, w, strict=True)), (x_tr,), mix)
    g = torch.autograd.grad(cross_entropy(logits, y_tr), w, create_graph=True)
    bufs = [method.w_optimizer.state.get(p, {}).get("momentum_buffer") for p in model.parameters()]
    unrolled = [
        wi - xi * (gi + wd * wi + (0.0 if b is None else momentum * b)) for wi, gi, b in zip(w, g, bufs, strict=True)
    ]
    if not through_w:
        unrolled = [u.detach() for u in unrolled]
    params = dict(zip(names, unrolled, strict=True))
    _, logits = functional_call(model, params, (x_val,), {"weights": {"cell": alpha.softmax(-1)}})
    return torch.autograd.grad(cross_entropy(logits, y_val), alpha)[0]


@pytest.mark.parametrize(
    ("momentum", "wd", "warm_steps"),
    [(0.0, 0.0, 0), (0.9, 1e-3, 1)],  # the plain unrolled step, then one with a momentum buffer and decay
)
def test_second_order_arch_gradient_matches_the_exact_hypergradient(momentum, wd, warm_steps):
    xi = 0.5  # large, so the Hessian term is a big part of the gradient
    method = make_method(order=2, lr=xi, momentum=momentum, nesterov=False, weight_decay=wd)
    batches = tiny_batches()
    for _ in range(warm_steps):
        method._weight_step(*batches[:2])  # fills the momentum buffer the unrolled step reads
    exact = exact_hypergradient(method, batches, xi, momentum, wd)
    got = method.arch_grads(*batches)[0]
    # The only approximation is the central difference of grad_alpha L_tr at w +- R v with |R v| = 0.01:
    # its error is O(R^2) times a third derivative, measured here at ~1e-4 of the whole gradient (it falls
    # 100x per 10x smaller R). 1e-3 leaves 10x margin; float64 keeps rounding error far below it.
    rel_error = ((got - exact).norm() / exact.norm()).item()
    assert rel_error < 1e-3
    # ...and the test can tell: dropping the Hessian term is off by far more than the tolerance.
    partial = exact_hypergradient(method, batches, xi, momentum, wd, through_w=False)
    assert ((partial - exact).norm() / exact.norm()).item() > 0.05


def expected_first_adam_step(alpha: torch.Tensor, grad: torch.Tensor, lr: float, wd: float) -> torch.Tensor:
    """Adam's first step after bias correction: alpha - lr * g / (|g| + eps), g including L2 decay."""
    g = grad + wd * alpha
    return alpha - lr * g / (g.abs() + ADAM_EPS)


def test_second_order_train_step_takes_the_alpha_step_first_then_the_clipped_weight_step():
    method = make_method(order=2, lr=0.1, grad_clip=1e-3)
    batches = tiny_batches()
    alpha0, w0 = method.alphas[0].detach().clone(), [p.detach().clone() for p in method.weights]
    grad = method.arch_grads(*batches)[0]  # at the current weights: what the α step must use
    loss, n_correct = method.train_step(*batches)
    torch.testing.assert_close(method.alphas[0].detach(), expected_first_adam_step(alpha0, grad, 3e-4, 1e-3))
    assert any(not torch.equal(p, p0) for p, p0 in zip(method.weights, w0, strict=True))
    # The clip counts α's weight-loss gradient with the weights' (AutoDL clips network.parameters()).
    norm = torch.cat([t.grad.reshape(-1) for t in [*method.weights, method.alphas[0]] if t.grad is not None]).norm()
    assert norm.item() == pytest.approx(1e-3, rel=1e-6)
    assert loss.ndim == 0 and 0 <= int(n_correct) <= 8


def test_first_order_step_updates_weights_then_alpha_at_the_new_weights():
    method = make_method(order=1)
    batches = tiny_batches()
    alpha0, w0 = method.alphas[0].detach().clone(), [p.detach().clone() for p in method.weights]
    method.train_step(*batches)
    alpha1 = method.alphas[0].detach().clone()
    assert any(not torch.equal(p, p0) for p, p0 in zip(method.weights, w0, strict=True))
    with torch.no_grad():
        method.alphas[0].copy_(alpha0)
    grad = method.arch_grads(*batches)[0]  # order 1: grad_alpha L_val at the already updated weights
    torch.testing.assert_close(alpha1, expected_first_adam_step(alpha0, grad, 3e-4, 1e-3))
    assert method.end_epoch(1, lambda: [])["arch_loss"] is not None


def test_genotype_is_the_argmax_alpha_over_all_ops_none_included():
    method = make_method()
    choice = [0, 1, 2, 3, 4, 0]
    with torch.no_grad():
        method.alphas[0].zero_()
        method.alphas[0][torch.arange(6), torch.tensor(choice)] = 1.0
    assert method.genotype().ops == tuple(NB201_OPS[o] for o in choice)
    assert method.genotype().ops[0] == "none"


def test_state_round_trip_resumes_identically():
    batches = tiny_batches()
    a = make_method(seed=0, momentum=0.9)
    a.train_step(*batches)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = make_method(seed=1, momentum=0.9)  # different weights and α until the state is loaded
    b.load_state_dict(torch.load(buffer, weights_only=True))
    for method in (a, b):
        method.train_step(*batches)
    torch.testing.assert_close(a.alphas[0], b.alphas[0], rtol=0, atol=0)
    for pa, pb in zip(a.weights, b.weights, strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_rejects_second_order_with_the_weight_step_first():
    with pytest.raises(ValueError, match="second-order"):
        cfg = darts_cfg(order=2, options={"step_order": "weight_first"})
        Darts(Nb201Supernet(channels=4, cells_per_stage=1), NB201, cfg)
