"""Finite differences run in float32 whatever `amp` says (Λ-DARTS's perturbed passes, DARTS 2nd order's
Hessian-vector product): the difference of two nearby bf16 gradients is rounding noise."""

import contextlib
import copy

import pytest
import torch
from torch.func import functional_call
from torch.nn.functional import cross_entropy

from isdarts.config import ArchConfig, SearchConfig
from isdarts.search import darts as darts_module
from isdarts.search import lambda_darts as lambda_module
from isdarts.search.darts import Darts
from isdarts.search.lambda_darts import LambdaDarts
from isdarts.search.speed import SpeedPlan, apply_speed
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")
BF16 = SpeedPlan(channels_last=False, amp=True, compile=False, cudnn_benchmark=False)
LAMBDA = {"regulariser": "corr", "lam": 0.25, "epsilon": 1e-4}


def pair(method: str, cls: type, options: dict) -> tuple:
    """The same method and supernet twice: float32, and with bf16 autocast on its training forward."""
    torch.manual_seed(0)
    model = Nb201Supernet(channels=8, cells_per_stage=1)
    amp_model = apply_speed(copy.deepcopy(model), BF16)
    cfg = SearchConfig(method=method, arch=ArchConfig(), epochs=3, lr=0.5, options=options)
    fp32, bf16 = cls(model, NB201, cfg), cls(amp_model, NB201, cfg)
    with torch.no_grad():
        fp32.alphas[0].normal_()
        bf16.alphas[0].copy_(fp32.alphas[0])
    for m in (fp32, bf16):
        m.set_epoch(0)
        m.model.train()
    return fp32, bf16


def batch(seed: int = 0, n: int = 16):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    fa, fb = torch.cat([t.reshape(-1) for t in a]), torch.cat([t.reshape(-1) for t in b])
    return (fa @ fb / (fa.norm() * fb.norm())).item()


def lambda_estimates(fp32: LambdaDarts, bf16: LambdaDarts):
    x, y = batch()
    model = fp32.model
    names = [name for name, _ in model.named_parameters()]
    p = fp32.arch_weights()["cell"].detach()
    clones = [p.clone().requires_grad_() for _ in range(model.num_search_cells)]
    params = dict(zip(names, model.parameters(), strict=True))
    _, logits = functional_call(model, params, (x,), {"weights": {"cell": clones}})
    cell_grads = [g.detach() for g in torch.autograd.grad(cross_entropy(logits, y), clones)]
    return fp32.alignment_correction(x, y, cell_grads), bf16.alignment_correction(x, y, cell_grads)


def hessian_products(fp32: Darts, bf16: Darts):
    x, y = batch()
    gen = torch.Generator().manual_seed(1)
    v = [torch.randn(w.shape, generator=gen) for w in fp32.weights]
    return fp32._alpha_hessian_vector(x, y, v), bf16._alpha_hessian_vector(x, y, v)


def test_lambda_darts_perturbed_passes_under_amp_give_the_float32_estimate():
    ref, got = lambda_estimates(*pair("lambda_darts", LambdaDarts, LAMBDA))
    for r, g in zip(ref, got, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)


def test_second_order_hessian_vector_product_under_amp_gives_the_float32_one():
    ref, got = hessian_products(*pair("darts2", Darts, {}))
    for r, g in zip(ref, got, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)


def test_the_same_differences_taken_in_bf16_would_be_noise(monkeypatch):
    """Why the float32 passes matter: with them switched off, the bf16 estimates point elsewhere."""
    for module in (darts_module, lambda_module):
        monkeypatch.setattr(module, "full_precision", lambda model: contextlib.nullcontext())
    ref, got = lambda_estimates(*pair("lambda_darts", LambdaDarts, LAMBDA))
    assert cosine(ref, got) < 0.9
    ref, got = hessian_products(*pair("darts2", Darts, {}))
    assert cosine(ref, got) < 0.99
