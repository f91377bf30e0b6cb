"""SNAS (FAMILY.md "Sampling: SNAS"): the τ and lr schedules, the soft Gumbel-softmax sample, one backward for
weights and α, drop-path, the resource penalty, the derivations, and exact resumes."""

import io

import pytest
import torch

from isdarts.config.search import SearchConfig
from isdarts.search.snas import (
    Snas,
    cost_tables,
    drop_path_weights,
    edge_all_genotype,
    gumbel_softmax,
    log_resource,
    op_cost,
    tau_at,
)
from isdarts.spaces.darts.space import SPACE as DARTS
from isdarts.spaces.nb201.space import SPACE as NB201

pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(space: str = "nb201", epochs: int = 4, **options) -> SearchConfig:
    return SearchConfig(space=space, method="snas", C=4, N=1, epochs=epochs, image_size=8, options=options)


def build(space=NB201, seed: int = 0, fused: bool = True, **kw) -> Snas:
    config = cfg(space.name, **kw)
    model = space.build_supernet(4, 1, 10, fused=fused)
    return Snas(model, space, config, torch.Generator().manual_seed(seed))


def batch(n: int = 4, size: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def test_tau_falls_linearly_per_epoch_as_the_official_scheduler():
    assert tau_at(0, 1.0, 0.03, 150) == pytest.approx(0.993533, abs=1e-6)
    assert tau_at(74, 1.0, 0.03, 150) == pytest.approx(0.515, abs=1e-9)
    assert tau_at(149, 1.0, 0.03, 150) == pytest.approx(0.03, abs=1e-12)
    assert tau_at(300, 1.0, 0.03, 150) == 0.03  # floored, as the official Temp_Scheduler
    # tau_epochs 0: over the search's own epochs, reaching τ_min in its last one.
    method = build(epochs=5, tau_epochs=0)
    method.set_epoch(4)
    assert method.tau == pytest.approx(0.03)


def test_lr_is_the_cosine_one_epoch_ahead_with_the_official_offset():
    method = build(epochs=150, lr_epoch_offset=1)
    assert method.set_epoch(0) == pytest.approx(0.0249974, abs=1e-7)
    assert method.set_epoch(149) == pytest.approx(0.001, abs=1e-12)
    assert build(epochs=150).set_epoch(0) == 0.025  # NB201's AutoDL recipe: no offset
    assert cfg("darts").option("lr_epoch_offset") == 1 and cfg("nb201").option("lr_epoch_offset") == 0


def test_alpha_starts_at_the_official_normal_1_0p01():
    alpha = build(DARTS).alphas[0].detach()
    assert abs(alpha.mean().item() - 1.0) < 0.005 and 0.005 < alpha.std().item() < 0.015


def test_a_sample_is_the_soft_gumbel_softmax_of_alpha():
    alpha = torch.randn(14, 8, dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(3)
    z = gumbel_softmax(alpha, 0.7, gen)
    assert bool((z > 0).all()) and torch.allclose(z.sum(-1), torch.ones(14, dtype=torch.float64))
    gen.manual_seed(3)
    u = torch.rand(14, 8, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(z, torch.softmax((alpha - (-u.log()).log()) / 0.7, dim=-1))
    assert z.grad_fn is not None  # soft: α's gradient flows through the sample itself


@pytest.mark.parametrize(("tau", "expected"), [(1.0, 0.494), (0.03, 0.982)])
def test_expected_largest_entry_matches_the_spec_monte_carlo(tau, expected):
    z = gumbel_softmax(torch.zeros(40_000, 8), tau, torch.Generator().manual_seed(0))
    assert z.max(dim=-1).values.mean().item() == pytest.approx(expected, abs=0.005)


def test_one_backward_fills_weight_and_alpha_gradients_from_the_same_loss():
    method = build()
    x, y = batch()
    state = method.sampler.get_state()
    method.model.train()
    loss, _ = method.backward(x, y)
    alpha_grad = method.alphas[0].grad.clone()
    weight_grads = [w.grad.clone() for w in method.weights]
    assert alpha_grad.abs().sum() > 0 and all(g.abs().sum() > 0 for g in weight_grads)
    # Replay the same sample: autograd of that one CE gives both gradients.
    method.sampler.set_state(state)
    z = method.sample()
    replay, _ = method.loss(x, y, z)
    grads = torch.autograd.grad(replay, [method.alphas[0], *method.weights])
    assert replay.item() == loss.item()
    torch.testing.assert_close(grads[0], alpha_grad)
    for got, want in zip(grads[1:], weight_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_train_step_clips_and_steps_both_and_counts_alpha_steps():
    method = build(arch_clip=1e-6)
    before_alpha = method.alphas[0].detach().clone()
    before_w = [w.detach().clone() for w in method.weights]
    method.set_epoch(0)
    method.train_step(*batch())
    assert not torch.equal(method.alphas[0], before_alpha)
    assert any(not torch.equal(w, b) for w, b in zip(method.weights, before_w, strict=True))
    assert method.alpha_steps == 1
    # α's gradient is clipped to arch_clip (Adam still moves α: it normalises the step).
    assert method.alphas[0].grad.norm().item() <= 1e-6 * 1.0001


def test_drop_path_keeps_the_expected_output_and_divides_by_keep():
    z = torch.softmax(torch.randn(14, 8), -1)
    weights = drop_path_weights(z, cells=3, batch=2000, drop=0.3, generator=torch.Generator().manual_seed(0))
    assert len(weights) == 3 and weights[0].shape == (14, 8, 2000, 1, 1, 1)
    factor = weights[1] / z[:, :, None, None, None, None]
    values = set(torch.round(factor * 1e5).unique().tolist())
    assert values == {0.0, round(1e5 / 0.7)}  # dropped, or kept and divided by 0.7
    assert factor.mean().item() == pytest.approx(1.0, abs=0.01)  # E[output] unchanged
    assert not torch.equal(weights[0], weights[1])  # each cell draws its own masks
    # Constant per edge across its ops: the mask multiplies the edge's whole output.
    torch.testing.assert_close(factor, factor[:, :1].expand_as(factor))


@pytest.mark.parametrize("fused", [True, False])
def test_per_image_weights_broadcast_like_the_weight_table(fused):
    model = DARTS.build_supernet(4, 1, 10, fused=fused)
    x, _ = batch()
    z = {k: torch.softmax(torch.randn(14, 8), -1) for k in DARTS.kinds}
    table = model(x, weights=z)[1]
    per_image = {k: [w[:, :, None, None, None, None].expand(14, 8, 4, 1, 1, 1)] * model.num_cells(k)
                 for k, w in z.items()}
    torch.testing.assert_close(model(x, weights=per_image)[1], table)


def test_op_costs_are_snas_operations_counts():
    # SNAS operations.py at C=16, output 32x32 (stride 1) and 16x16 (stride 2).
    assert op_cost("dua_sepc_3x3", 16, 32, 1) == (800, 800 * 1024, 1024 * (7 * 16 + 16) + 800)
    assert op_cost("dua_sepc_5x5", 16, 16, 2) == (2 * 16 * 25 + 512, (800 + 512) * 256, 256 * 176 + 1312)
    assert op_cost("dil_sepc_3x3", 16, 32, 1) == (144 + 256, 400 * 1024, 1024 * 64 + 400)
    assert op_cost("max_pool_3x3", 16, 16, 2) == (0, 9 * 256 * 16, 5 * 256 * 16)
    assert op_cost("skip_connect", 16, 32, 1) == (0, 0, 2 * 16 * 1024)
    assert op_cost("skip_connect", 16, 16, 2) == (256, 256 * 256, 2 * 256 * (64 + 8) + 256)  # FactorizedReduce
    assert op_cost("none", 16, 32, 1) == (0, 0, 0)
    assert op_cost("nor_conv_3x3", 16, 32, 1) == (16 * 16 * 9, 2304 * 1024, 1024 * 32 + 2304)
    with pytest.raises(ValueError, match="no cost model"):
        op_cost("conv_7x1_1x7", 16, 32, 1)


def test_cost_tables_read_each_cells_resolution_and_each_edges_stride():
    model = DARTS.build_supernet(4, 1, 10, fused=True)
    tables = cost_tables(model, DARTS, image_size=8)
    assert tables["normal"].shape == (3, 14, 8, 3) and tables["reduce"].shape == (2, 14, 8, 3)
    skip, sep = DARTS.ops.index("skip_connect"), DARTS.ops.index("dua_sepc_3x3")
    # Normal cell 0: C=4 at 8x8, identity skips; reduction cell 0: C=8 at 4x4, its s0/s1 edges strided.
    assert tables["normal"][0, 0, skip].tolist() == [0, 0, 2 * 4 * 64]
    assert tables["normal"][0, 0, sep].tolist() == list(op_cost("dua_sepc_3x3", 4, 8, 1))
    edge_s0, edge_node = DARTS.edges.index("0<-0"), DARTS.edges.index("1<-2")
    assert tables["reduce"][0, edge_s0, skip].tolist() == list(op_cost("skip_connect", 8, 4, 2))
    assert tables["reduce"][0, edge_node, skip].tolist() == list(op_cost("skip_connect", 8, 4, 1))
    assert tables["normal"][2, 0, sep].tolist() == list(op_cost("dua_sepc_3x3", 16, 2, 1))


def test_log_resource_clamps_below_one_and_reaches_alpha_through_z():
    costs = torch.tensor([[[[0.5, 0.0, 10.0], [100.0, 1000.0, 1e4]]]])  # 1 cell, 1 edge, 2 ops
    onehot_cheap = torch.tensor([[1.0, 0.0]])
    assert log_resource(onehot_cheap, costs).item() == pytest.approx(torch.tensor(10.0).log().item() / 3)
    onehot_dear = torch.tensor([[0.0, 1.0]])
    assert log_resource(onehot_dear, costs).item() == pytest.approx(torch.tensor(1e9).log().item() / 3, rel=1e-6)
    method = build(DARTS, resource_lambda=1e-2)
    z = {k: torch.softmax(a, -1) for k, a in method.alpha.items()}
    penalty = method.resource_penalty(z)
    manual = 1e-2 * sum(log_resource(z[k], method.costs[k]) / method.model.num_cells(k) for k in DARTS.kinds)
    torch.testing.assert_close(penalty, manual)
    grads = torch.autograd.grad(penalty, method.alphas)
    assert all(g.abs().sum() > 0 for g in grads)


def test_evaluation_mixes_by_the_noise_free_relaxation_and_draws_nothing():
    method = build()
    method.set_epoch(2)
    state = method.sampler.get_state()
    weights = method.forward_weights(training=False)["cell"]
    torch.testing.assert_close(weights, torch.softmax(method.alphas[0] / method.tau, -1))
    x, _ = batch()
    torch.testing.assert_close(method.logits(x), method.logits(x))
    assert torch.equal(method.sampler.get_state(), state)


def test_edge_all_keeps_every_non_none_argmax_edge_on_the_darts_space():
    none, sep = DARTS.ops.index("none"), DARTS.ops.index("dua_sepc_3x3")
    weights = {}
    for kind in DARTS.kinds:
        w = torch.zeros(14, 8)
        w[:, sep] = 1.0
        w[DARTS.edges.index("0<-0"), none] = 2.0  # node 0 keeps only its s1 input
        weights[kind] = w
    genotype = edge_all_genotype(DARTS, weights)
    assert genotype.sparse
    assert genotype.normal[0] == (("sep_conv_3x3", 1),)
    assert len(genotype.normal[3]) == 5  # node 3 keeps all five inputs
    # NB201: each edge is its own group, so edge_all is the argmax incl. none.
    w = torch.randn(6, 5)
    assert edge_all_genotype(NB201, {"cell": w}) == NB201.genotype_from_weights({"cell": w})
    method = build(DARTS, derive="top2_no_none")
    assert method.genotype() == DARTS.genotype_from_weights(method.arch_weights())


def test_state_dict_resumes_the_exact_run():
    x, y = batch()
    first = build(DARTS, seed=0)
    for epoch in range(2):
        first.set_epoch(epoch)
        first.train_step(x, y)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    first.set_epoch(2)
    first.train_step(x, y)
    first.train_step(x, y)

    second = build(DARTS, seed=5)
    buffer.seek(0)
    second.load_state_dict(torch.load(buffer, weights_only=False))
    second.set_epoch(2)
    second.train_step(x, y)
    second.train_step(x, y)
    for a, b in zip(first.alphas, second.alphas, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(first.weights, second.weights, strict=True):
        assert torch.equal(a, b)
    assert second.alpha_steps == 4


@pytest.mark.parametrize(("options", "match"), [
    ({"tau_min": 2.0}, "tau_min <= tau_max"),
    ({"drop_path": 1.0}, "drop_path"),
    ({"arch_beta1": 1.0}, "arch_beta1"),
    ({"lr_epoch_offset": 2}, "lr_epoch_offset"),
])
def test_unusable_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        build(**options)
