"""GDAS (FAMILY.md "Sampling: GDAS"): the τ schedule, the straight-through Gumbel sampler, single-path
edges on both spaces (NB201's scalar-sum gradient included), the pooled genotype, and exact resumes."""

import io
import math

import pytest
import torch
from torch import nn

from isdarts.config import ArchConfig, SearchConfig
from isdarts.search import gdas as gdas_module
from isdarts.search.gdas import Gdas, gumbel_sample, tau_at, top_candidates_genotype
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.mixing import SampledPath
from isdarts.spaces.nb201.genotype import NB201_OPS
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201SearchCell, Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tau_falls_linearly_from_tau_max_to_tau_min_per_epoch():
    taus = [tau_at(e, 250, 10.0, 0.1) for e in (0, 1, 124, 249)]
    assert taus[0] == 10.0 and taus[3] == pytest.approx(0.1)
    assert taus[1] == pytest.approx(9.960241, abs=1e-6) and taus[2] == pytest.approx(5.069880, abs=1e-6)


def test_a_sample_is_one_hot_in_value_with_the_softmax_gradient():
    alpha = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    path = gumbel_sample(alpha, 2.0, gen, scalar_sum=True)
    rows = path.hard.detach()
    for e, k in enumerate(path.index):
        assert rows[e, k].item() == pytest.approx(1.0, abs=1e-6)
        assert all(rows[e, o].item() == 0.0 for o in range(5) if o != k)  # exactly 0, not merely small
    # Straight through: ∂h/∂α is ∂p/∂α of the same draw. Replaying the noise gives p.
    gen.manual_seed(0)
    noise = torch.empty(6, 5, dtype=torch.float64).exponential_(generator=gen)
    probs = torch.softmax((torch.log_softmax(alpha, -1) - noise.log()) / 2.0, dim=-1)
    assert path.index == tuple(probs.argmax(-1).tolist())
    weights = torch.randn(6, 5, dtype=torch.float64)
    (grad_h,) = torch.autograd.grad((path.hard * weights).sum(), alpha)
    (grad_p,) = torch.autograd.grad((probs * weights).sum(), alpha)
    torch.testing.assert_close(grad_h, grad_p)
    assert path.unselected.abs().max().item() == 0.0


@pytest.mark.parametrize("tau", [10.0, 0.1])
def test_sample_frequencies_follow_softmax_alpha_whatever_tau(tau):
    alpha = torch.tensor([[1.0, 0.0, -1.0, 0.5, 2.0]])
    gen = torch.Generator().manual_seed(1)
    counts = torch.zeros(5)
    for _ in range(10_000):
        counts[gumbel_sample(alpha, tau, gen, scalar_sum=False).index[0]] += 1
    torch.testing.assert_close(counts / 10_000, alpha.softmax(-1)[0], atol=0.01, rtol=0)


def test_non_finite_noise_is_redrawn(monkeypatch):
    draws = []
    real_log = torch.Tensor.log

    def log(self):
        out = real_log(self)
        if not draws:
            out = out.clone()
            out[0, 0] = -math.inf  # noise -> +inf Gumbel on the first draw only
        draws.append(1)
        return out

    monkeypatch.setattr(torch.Tensor, "log", log)
    path = gumbel_sample(torch.zeros(2, 5), 1.0, torch.Generator().manual_seed(0), scalar_sum=False)
    assert len(draws) == 2 and torch.isfinite(path.hard).all()


def cfg(space: str = "nb201", **options) -> SearchConfig:
    return SearchConfig(space=space, method="gdas", arch=ArchConfig(), epochs=4, options=options)


def nb201_method(seed: int = 0, fused: bool = True) -> Gdas:
    torch.manual_seed(seed)
    model = Nb201Supernet(channels=4, cells_per_stage=1, fused=fused)
    return Gdas(model, NB201, cfg(), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fused", [False, True])
def test_nb201_edges_run_only_the_sampled_op_and_unselected_entries_get_the_output_gradient_sum(fused):
    torch.manual_seed(0)
    cell = Nb201SearchCell(4, affine=False, track=False, fused=fused)
    ran: list[tuple[int, int]] = []
    for e, ops in enumerate(cell.edges):
        for o, op in enumerate(ops):
            op.register_forward_hook(lambda *_, e=e, o=o: ran.append((e, o)))
    index = (3, 2, 1, 0, 3, 4)  # edge 3<-0 samples `none`
    hard = torch.zeros(6, 5).scatter_(1, torch.tensor(index).unsqueeze(1), 1.0).requires_grad_()
    alive = tuple(tuple(range(5)) for _ in range(6))
    x = torch.randn(2, 4, 8, 8)
    out = cell(x, alive, SampledPath(hard, index, scalar_sum=True), None, ("cell", 0))
    if not fused:  # the fused cell runs convs functionally; the module hooks see the reference path only
        assert set(ran) == {(e, k) for e, k in enumerate(index) if NB201_OPS[k] != "none"}
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * upstream).sum(), hard)
    # Edges into the output node (3<-0, 3<-1, 3<-2): ∂L/∂h[e, o] of every unselected o is the element sum of
    # ∂L/∂(node 3) = `upstream`, through a scalar whose value is exactly 0.
    for e in (3, 4, 5):
        for o in range(5):
            if o != index[e]:
                assert grad[e, o].item() == pytest.approx(upstream.sum().item(), rel=1e-5)
    without = cell(x, alive, SampledPath(hard, index, scalar_sum=False), None, ("cell", 0))
    assert torch.equal(out, without)  # the scalars change no value


def test_scalar_sum_changes_no_value_and_is_off_on_the_darts_space():
    method = nb201_method()
    x = torch.randn(2, 3, 8, 8)
    path = method.forward_weights()["cell"]
    with torch.no_grad():
        with_sum = method.model(x, weights={"cell": path})[1]
        without = method.model(x, weights={"cell": SampledPath(path.hard, path.index, False)})[1]
    assert torch.equal(with_sum, without)
    darts = Gdas(DartsSupernet(channels=4, cells_per_stage=1), DARTS_SPACE, cfg("darts"))
    assert darts.forward_weights()["normal"].scalar_sum is False and method.scalar_sum is True


def test_fused_and_unfused_single_paths_agree():
    fused, unfused = nb201_method(fused=True), nb201_method(fused=False)
    unfused.model.load_state_dict(fused.model.state_dict())
    path = fused.forward_weights()["cell"]
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fused.model(x, weights={"cell": path})[1], unfused.model(x, weights={"cell": path})[1])


def test_weight_and_arch_steps_draw_different_samples_and_evaluation_runs_the_argmax_path(monkeypatch):
    method = nb201_method()
    seen = []
    real = gdas_module.gumbel_sample
    monkeypatch.setattr(gdas_module, "gumbel_sample", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(8, 3, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    method.set_epoch(0)
    method.train_step(x, y, x, y)
    assert len(seen) == 2 and (seen[0].index != seen[1].index or not torch.equal(seen[0].hard, seen[1].hard))
    path = method.forward_weights(training=False)["cell"]
    assert path.index == tuple(method.alphas[0].argmax(-1).tolist()) and not path.scalar_sum


def test_the_genotype_is_the_argmax_on_nb201_and_the_pooled_top_two_per_node_on_the_darts_space():
    method = nb201_method()
    with torch.no_grad():
        method.alphas[0].normal_()
    assert method.genotype().op_indices() == tuple(method.alphas[0].argmax(-1).tolist())
    weights = {kind: torch.full((14, 8), 0.01) for kind in ("normal", "reduce")}
    weights["normal"][0, 3] = weights["normal"][0, 4] = 0.9  # two ops of edge 0<-0 beat everything at node 0
    weights["normal"][1, 0] = 5.0  # `none` never counts
    genotype = top_candidates_genotype(DARTS_SPACE, weights)
    node0 = genotype.normal[0]
    assert sorted(j for _, j in node0) == [0, 0] and all(op != "none" for op, _ in node0)


def test_state_round_trip_resumes_identically():
    gen = torch.Generator().manual_seed(5)
    batches = [(torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen)) for _ in range(4)]
    a = nb201_method()
    a.set_epoch(1)
    a.train_step(*batches[0], *batches[1])
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = nb201_method(seed=1)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    for method in (a, b):
        method.set_epoch(1)
        method.train_step(*batches[2], *batches[3])
    for pa, pb in zip([*a.alphas, *a.weights], [*b.alphas, *b.weights], strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert a.tau == b.tau == tau_at(1, 4, 10.0, 0.1)
    assert isinstance(a.model, nn.Module)
