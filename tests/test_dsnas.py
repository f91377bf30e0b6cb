"""DSNAS (FAMILY.md "Sampling: DSNAS"): hard one-hot children, the gate-sensitivity α gradient, single-path
forwards that never run an unsampled op, early fixing, and exact resumes."""

import io

import pytest
import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.search.dsnas import Dsnas, one_hot_sample, score
from isdarts.spaces.darts.space import SPACE as DARTS
from isdarts.spaces.mixing import SampledPath
from isdarts.spaces.nb201.space import SPACE as NB201

pytestmark = pytest.mark.usefixtures("one_thread")


def build(space=NB201, seed: int = 0, fused: bool = True, epochs: int = 4, **options) -> Dsnas:
    config = SearchConfig(space=space.name, method="dsnas", C=4, N=1, epochs=epochs, image_size=8, options=options)
    model = space.build_supernet(4, 1, 10, fused=fused)
    return Dsnas(model, space, config, torch.Generator().manual_seed(seed))


def batch(n: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def test_a_sample_is_an_exact_one_hot_leaf_and_fixed_rows_are_forced():
    alpha = torch.randn(14, 8)
    z, index = one_hot_sample(alpha, torch.Generator().manual_seed(0), fixed={3: 5})
    assert z.is_leaf and z.requires_grad and z.grad_fn is None
    assert set(z.detach().unique().tolist()) == {0.0, 1.0} and torch.equal(z.detach().sum(-1), torch.ones(14))
    assert index == tuple(z.detach().argmax(-1).tolist()) and index[3] == 5


def test_equal_alpha_samples_every_op_uniformly_and_unequal_by_softmax():
    gen = torch.Generator().manual_seed(1)
    counts = torch.zeros(5)
    for _ in range(10):
        _, index = one_hot_sample(torch.zeros(1000, 5), gen)
        counts += torch.bincount(torch.tensor(index), minlength=5)
    torch.testing.assert_close(counts / 10_000, torch.full((5,), 0.2), atol=0.01, rtol=0)
    alpha = torch.tensor([[1.0, 0.0, -1.0, 0.5, 2.0]])
    _, index = one_hot_sample(alpha.expand(10_000, 5), gen)
    freq = torch.bincount(torch.tensor(index), minlength=5) / 10_000
    torch.testing.assert_close(freq, alpha.softmax(-1)[0], atol=0.01, rtol=0)


def test_score_is_the_gradient_of_the_sampled_log_probability():
    alpha = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    index = (0, 4, 2, 2, 1, 3)
    log_prob = torch.log_softmax(alpha, -1)[torch.arange(6), torch.tensor(index)].sum()
    (grad,) = torch.autograd.grad(log_prob, alpha)
    torch.testing.assert_close(score(alpha, index), grad)


@pytest.mark.parametrize("space", [NB201, DARTS], ids=["nb201", "darts"])
def test_alpha_gradient_is_the_gate_sensitivity_times_the_score(space):
    method = build(space)
    x, y = batch()
    state = method.sampler.get_state()
    method.model.train()
    method.backward(x, y)
    # Replay the same child; r_e is autograd's ∂CE/∂Z_{e,k} of the CE alone (L_α adds nothing to it).
    method.sampler.set_state(state)
    paths = method.sample()
    ce, _ = method.loss(x, y, paths)
    zs = [paths[k].hard for k in space.kinds]
    grads = torch.autograd.grad(ce, zs, allow_unused=True)
    for kind, alpha, z, grad_z in zip(space.kinds, method.alphas, zs, grads, strict=True):
        reward = torch.zeros(len(z)) if grad_z is None else grad_z.sum(-1)
        index = paths[kind].index
        if grad_z is not None:  # only the sampled entry of each row carries the gate's gradient
            unsampled = torch.ones_like(grad_z, dtype=torch.bool)
            unsampled[torch.arange(len(index)), torch.tensor(index)] = False
            assert bool((grad_z[unsampled] == 0).all())
        want = reward.unsqueeze(-1) * (nn.functional.one_hot(torch.tensor(index), space.num_ops)
                                       - torch.softmax(alpha.detach(), -1))
        torch.testing.assert_close(alpha.grad, want)
        torch.testing.assert_close(alpha.grad.sum(-1), torch.zeros(len(index)), atol=1e-7, rtol=0)
        assert reward.abs().sum() > 0


def test_an_edge_that_samples_none_gets_no_alpha_update():
    method = build()
    none = NB201.ops.index("none")
    with torch.no_grad():
        method.alphas[0][0, none] = 40.0  # edge 0 samples `none` (probability 1 - 4e-17)
    method.model.train()
    method.backward(*batch())
    assert torch.equal(method.alphas[0].grad[0], torch.zeros(5))
    assert method.alphas[0].grad[1:].abs().sum() > 0


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("space", [NB201, DARTS], ids=["nb201", "darts"])
def test_the_child_forward_equals_the_plain_single_path_network(space, fused):
    method = build(space, fused=fused)
    method.model.train()
    paths = method.sample()
    x, _ = batch()
    dense = {k: p.hard.detach() for k, p in paths.items()}  # the one-hot table: every op runs, times 0 or 1
    torch.testing.assert_close(method.model(x, weights=paths)[1], method.model(x, weights=dense)[1])


def test_unsampled_ops_are_never_computed():
    method = build(DARTS, fused=False)
    calls = []
    cells = [m for m in method.model.modules() if hasattr(m, "edges")]
    for cell in cells:
        for e, ops in enumerate(cell.edges):
            for o, op in enumerate(ops):
                op.register_forward_hook(lambda *_args, c=cell, e=e, o=o: calls.append((c.kind, e, o)))
    method.model.train()
    paths = method.sample()
    method.model(batch()[0], weights=paths)
    ran = set(calls)
    none = DARTS.ops.index("none")
    wanted = {(k, e, o) for k, p in paths.items() for e, o in enumerate(p.index) if o != none}
    assert ran == wanted


def test_weight_decay_reaches_weights_the_child_did_not_use():
    method = build(weight_decay=0.1)
    method.set_epoch(0)
    before = [w.detach().clone() for w in method.weights]
    method.train_step(*batch())
    # The official code zeroes gradients instead of freeing them: every weight moves, used or not.
    assert all(not torch.equal(w, b) for w, b in zip(method.weights, before, strict=True) if b.abs().sum() > 0)


def test_evaluation_runs_the_argmax_child_cached_until_alpha_moves():
    method = build()
    path = method.forward_weights(training=False)["cell"]
    assert isinstance(path, SampledPath) and path.index == tuple(method.alphas[0].argmax(-1).tolist())
    assert method.forward_weights(training=False)["cell"] is path
    method.set_epoch(0)
    method.train_step(*batch())
    assert method.forward_weights(training=False)["cell"] is not path


def test_early_fix_freezes_confident_edges_once_per_epoch():
    method = build(early_fix_arch=True)
    skip = NB201.ops.index("skip_connect")
    with torch.no_grad():
        method.alphas[0][2, skip] = 3.0  # top-1 minus top-2 probability ≈ 0.77
    frozen = method.alphas[0][2].detach().clone()
    method.set_epoch(0)
    assert set(method.fixed["cell"]) == {2}
    for _ in range(3):
        assert method.sample()["cell"].index[2] == skip
    method.train_step(*batch())
    moved = method.alphas[0][2].detach().clone()
    method.set_epoch(0)  # a resumed epoch does not restore or freeze again
    assert torch.equal(method.alphas[0][2], moved)
    method.set_epoch(1)  # the next epoch restores the frozen row
    assert torch.equal(method.alphas[0][2], frozen)
    assert method.end_epoch(2, None)["fixed_edges"] == [2]


def test_state_dict_resumes_the_exact_run():
    x, y = batch()
    first = build(DARTS, seed=0, early_fix_arch=True)
    for epoch in range(2):
        first.set_epoch(epoch)
        first.train_step(x, y)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    first.set_epoch(2)
    first.train_step(x, y)
    first.train_step(x, y)

    second = build(DARTS, seed=7, early_fix_arch=True)
    buffer.seek(0)
    second.load_state_dict(torch.load(buffer, weights_only=False))
    second.set_epoch(2)
    second.train_step(x, y)
    second.train_step(x, y)
    for a, b in zip(first.alphas, second.alphas, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(first.weights, second.weights, strict=True):
        assert torch.equal(a, b)


def test_nb201_port_defaults_and_data_share():
    config = SearchConfig(space="nb201", method="dsnas")
    assert config.option("arch_lr") == 1e-3 and config.option("arch_weight_decay") == 0.0
    assert Dsnas.train_share(config) == 0.5
    assert Dsnas.train_share(SearchConfig(space="darts", method="dsnas")) is None
