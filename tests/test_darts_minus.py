"""DARTS- (FAMILY.md "DARTS-"): the β schedule, the auxiliary path on both spaces (an identity at β=1 with the
mixed ops silenced, DARTS bit for bit at β=0, fused equal to unfused, masked ops never run), a supernet without
it unchanged, the aux weights trained by SGD and never by Adam, the aux path in every forward, the DARTS
genotype, the options and the paper row."""

import math

import pytest
import torch
from method_helpers import method_on_supernet
from method_helpers import random_batches as batches
from torch import nn

from isdarts.config import ArchConfig, SearchConfig
from isdarts.config.paper import paper_mismatches
from isdarts.search.darts import Darts
from isdarts.search.darts_minus import DartsMinus, beta_schedule
from isdarts.search.loop import build_method
from isdarts.spaces.auxiliary import AuxiliarySkip, identity_conv1x1
from isdarts.spaces.darts.ops import FactorizedReduce
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import DartsSearchCell, DartsSupernet
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201SearchCell, Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")
SPACES = {"nb201": (NB201, Nb201Supernet), "darts": (DARTS_SPACE, DartsSupernet)}


# ---------------------------------------------------------------- the β schedule
def test_beta_values_of_the_spec():
    def at(t, decay="linear"):
        return beta_schedule(t, 1.0, decay, 0, 50, 50)

    assert [at(0), at(25), at(49)] == [1.0, 0.5, pytest.approx(0.02)]
    assert at(25, "cosine") == pytest.approx(0.5)
    assert at(25, "slow_cosine") == pytest.approx(0.70710678)
    assert at(0, "cosine") == 1.0 and at(0, "slow_cosine") == 1.0
    assert all(at(t, "none") == 1.0 for t in (0, 25, 49))
    assert beta_schedule(10, 2.0, "linear", 0, 50, 50) == pytest.approx(1.6)  # β0 scales every value


def test_beta_before_t_start_after_t_stop_and_the_t_quirk():
    # Before t_start: β0. From t_start the formula reads t itself, not t - t_start ([DM]'s quirk).
    assert beta_schedule(3, 1.0, "linear", 5, 50, 50) == 1.0
    assert beta_schedule(5, 1.0, "linear", 5, 50, 50) == pytest.approx(1.0)  # (50 - 5) / (50 - 5)
    assert beta_schedule(20, 1.0, "linear", 10, 50, 50) == pytest.approx(30 / 40)
    assert beta_schedule(10, 1.0, "cosine", 10, 50, 50) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    # After t_stop it holds the value set at t_stop; with t_stop < t_start that value is β0.
    held = beta_schedule(30, 1.0, "linear", 0, 30, 50)
    assert held == pytest.approx(0.4)
    assert [beta_schedule(t, 1.0, "linear", 0, 30, 50) for t in (31, 40, 49)] == [held] * 3
    assert beta_schedule(40, 1.0, "linear", 20, 10, 50) == 1.0
    with pytest.raises(ValueError, match="t_max > t_start"):
        beta_schedule(5, 1.0, "linear", 5, 50, 5)
    with pytest.raises(ValueError, match="unknown β decay"):
        beta_schedule(0, 1.0, "step", 0, 50, 50)


# ---------------------------------------------------------------- the supernets
def tables(space, gen, zero=False):
    return {kind: torch.zeros(space.num_edges, space.num_ops) if zero else
            torch.rand(space.num_edges, space.num_ops, generator=gen).softmax(-1).requires_grad_()
            for kind in space.kinds}


def with_beta(weights, beta):
    return {kind: AuxiliarySkip(w, torch.tensor(beta)) for kind, w in weights.items()}


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("aux_op", ["skip", "conv1"])
def test_nb201_edges_at_beta_1_with_silent_ops_are_identities(fused, aux_op):
    cell = Nb201SearchCell(4, affine=False, track=False, fused=fused)
    cell.add_auxiliary(aux_op)
    x = torch.randn(2, 4, 5, 5)
    out = cell(x, tuple(tuple(range(5)) for _ in range(6)), AuxiliarySkip(torch.zeros(6, 5), torch.tensor(1.0)))
    # node 1 = x, node 2 = x + node 1, node 3 = x + node 1 + node 2: each aux edge on its own input node.
    torch.testing.assert_close(out, 4 * x, rtol=0, atol=0 if aux_op == "skip" else 1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_darts_normal_cell_at_beta_1_with_silent_ops_sums_its_inputs(fused):
    cell = DartsSearchCell(6, 6, 4, reduction=False, reduction_prev=False, affine=False, track=False, fused=fused)
    cell.add_auxiliary("skip")
    s0, s1 = torch.randn(2, 6, 5, 5), torch.randn(2, 6, 5, 5)
    out = cell(s0, s1, tuple(tuple(range(8)) for _ in range(14)), AuxiliarySkip(torch.zeros(14, 8), torch.tensor(1.0)))
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    for _ in range(4):
        total = states[0]
        for state in states[1:]:
            total = total + state
        states.append(total)
    torch.testing.assert_close(out, torch.cat(states[2:], dim=1), rtol=0, atol=0)


def test_reduction_cells_get_a_learnable_factorized_reduce_on_their_8_stride_2_edges():
    model = DartsSupernet(4, 1, auxiliary="skip")
    for cell in model.cells:
        kinds = [type(m) for m in cell.aux]
        if cell.reduction:
            assert kinds.count(FactorizedReduce) == 8 and kinds.count(nn.Identity) == 6
            assert all(isinstance(m, FactorizedReduce) == (s == 2) for m, s in zip(cell.aux, cell.strides, strict=True))
        else:
            assert kinds == [nn.Identity] * 14
    conv1 = DartsSupernet(4, 1, auxiliary="conv1")
    assert sum(isinstance(m, FactorizedReduce) for c in conv1.cells for m in c.aux) == 16
    assert sum(isinstance(m, nn.Conv2d) for c in conv1.cells for m in c.aux) == 14 * 3 + 6 * 2
    conv = identity_conv1x1(3)
    assert conv.bias is None and torch.equal(conv.weight.view(3, 3), torch.eye(3))


@pytest.mark.parametrize(("space_name", "fused", "aux_op"), [
    ("nb201", True, "conv1"), ("nb201", False, "skip"), ("darts", True, "skip"), ("darts", False, "conv1")])
def test_beta_0_is_darts_bit_for_bit_and_the_other_weights_start_as_darts(space_name, fused, aux_op):
    space, cls = SPACES[space_name]
    torch.manual_seed(0)
    plain = cls(4, 1, fused=fused)
    torch.manual_seed(0)
    aux = cls(4, 1, fused=fused, auxiliary=aux_op)
    # The aux modules are built last: every other weight is initialised as without them.
    plain_state, aux_state = plain.state_dict(), aux.state_dict()
    assert set(plain_state) <= set(aux_state)  # NB201 with `skip`: identities only, no new weights
    assert all(".aux." in key for key in set(aux_state) - set(plain_state))
    assert all(torch.equal(value, aux_state[key]) for key, value in plain_state.items())
    gen = torch.Generator().manual_seed(1)
    w = tables(space, gen)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    want, got = plain(x, weights=w)[1], aux(x, weights=with_beta(w, 0.0))[1]
    assert torch.equal(want, got)
    grads_want = torch.autograd.grad(want.square().sum(), list(w.values()))
    grads_got = torch.autograd.grad(got.square().sum(), list(w.values()))
    assert all(torch.equal(a, b) for a, b in zip(grads_want, grads_got, strict=True))
    assert not torch.equal(aux(x, weights=with_beta(w, 0.5))[1], want)


@pytest.mark.parametrize("space_name", ["nb201", "darts"])
def test_without_the_aux_path_the_supernet_is_unchanged(space_name):
    space, cls = SPACES[space_name]
    torch.manual_seed(0)
    before = cls(4, 1)
    torch.manual_seed(0)
    built = cls(4, 1, auxiliary=None)
    assert [n for n, _ in before.named_parameters()] == [n for n, _ in built.named_parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before.state_dict().values(), built.state_dict().values(),
                                                 strict=True))
    assert not any(".aux." in name for name in built.state_dict())
    x = torch.randn(2, 3, 8, 8)
    w = tables(space, torch.Generator().manual_seed(2))
    assert torch.equal(before(x, weights=w)[1], built(x, weights=w)[1])
    with pytest.raises(ValueError, match="no auxiliary path"):
        built(x, weights=with_beta(w, 1.0))
    with pytest.raises(ValueError, match="AuxiliarySkip"):
        cls(4, 1, auxiliary="skip")(x, weights=w)
    with pytest.raises(ValueError, match="unknown auxiliary op"):
        cls(4, 1, auxiliary="conv3")
    with pytest.raises(ValueError, match="do not combine"):
        cls(8, 1, auxiliary="skip", partial_channels=2)


@pytest.mark.parametrize(("space_name", "aux_op"), [("nb201", "conv1"), ("darts", "skip")])
def test_fused_and_unfused_aux_paths_agree(space_name, aux_op):
    space, cls = SPACES[space_name]
    torch.manual_seed(0)
    fused = cls(4, 1, fused=True, auxiliary=aux_op)
    unfused = cls(4, 1, fused=False, auxiliary=aux_op)
    unfused.load_state_dict(fused.state_dict())
    gen = torch.Generator().manual_seed(3)
    weights = with_beta(tables(space, gen), 0.7)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    a, b = fused(x, weights=weights)[1], unfused(x, weights=weights)[1]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    ga = torch.autograd.grad(a.square().sum(), list(fused.parameters()))
    gb = torch.autograd.grad(b.square().sum(), list(unfused.parameters()))
    for x_grad, y_grad in zip(ga, gb, strict=True):
        torch.testing.assert_close(x_grad, y_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("space_name", ["nb201", "darts"])
@pytest.mark.parametrize("fused", [True, False])
def test_masked_ops_are_never_run(space_name, fused):
    space, cls = SPACES[space_name]
    model = cls(4, 1, fused=fused, auxiliary="conv1")
    conv = space.ops.index("nor_conv_3x3" if space_name == "nb201" else "dua_sepc_3x3")
    for kind in space.kinds:
        mask = torch.ones(space.num_edges, space.num_ops)
        mask[:, conv] = 0
        model.set_mask(kind, mask)
    calls = []
    cells = model.layers if space_name == "nb201" else model.cells
    for cell in cells:
        if hasattr(cell, "edges"):
            for edge in cell.edges:
                for module in edge[conv].modules():
                    module.register_forward_hook(lambda *_: calls.append(1))
                    module.register_forward_pre_hook(lambda *_: calls.append(1))
    # The fused path reads the ops' weights, not their modules: a masked op's weights must get no gradient.
    w = with_beta(tables(space, torch.Generator().manual_seed(4)), 1.0)
    logits = model(torch.randn(2, 3, 8, 8), weights=w)[1]
    logits.sum().backward()
    assert calls == []
    for cell in cells:
        if hasattr(cell, "edges"):
            assert all(p.grad is None for edge in cell.edges for p in edge[conv].parameters())


# ---------------------------------------------------------------- the method
def cfg(space: str = "nb201", epochs: int = 4, **options) -> SearchConfig:
    return SearchConfig(space=space, method="darts_minus", C=4, N=1, arch=ArchConfig(lr=0.01), epochs=epochs,
                        options=options)


def method(space: str = "nb201", seed: int = 0, fused: bool = True, **options) -> DartsMinus:
    return method_on_supernet(DartsMinus, cfg(space, **options), 4, seed, fused)


def test_options_defaults_step_order_and_the_supernet_it_asks_for():
    for space, first in (("nb201", False), ("darts", True)):
        options = cfg(space).options
        assert {k: options[k] for k in ("beta0", "decay", "t_start", "t_stop", "t_max", "aux_op")} == {
            "beta0": 1.0, "decay": "linear", "t_start": 0, "t_stop": 0, "t_max": 0, "aux_op": "skip"}
        built = build_method(cfg(space), 10, torch.device("cpu"), torch.Generator().manual_seed(0))
        assert built.model.auxiliary == "skip" and built.arch_first is first and built.order == 1
    assert DartsMinus.supernet_options(cfg(aux_op="conv1")) == {"auxiliary": "conv1"}
    m = method(epochs=4)
    assert (m.t_stop, m.t_max) == (4, 4)  # 0: the search's epochs
    assert method(t_stop=2, t_max=3).t_stop == 2
    with pytest.raises(ValueError, match="auxiliary='skip'"):
        DartsMinus(Nb201Supernet(4, 1), NB201, cfg())
    with pytest.raises(ValueError, match="auxiliary='conv1'"):
        DartsMinus(Nb201Supernet(4, 1, auxiliary="skip"), NB201, cfg(aux_op="conv1"))
    with pytest.raises(ValueError, match="t_max"):
        method(t_start=4)
    assert method(t_start=4, decay="none").beta_at(3) == 1.0


def test_the_darts_paper_row_is_expressible():
    paper = SearchConfig(space="darts", method="darts_minus", C=16, N=2, epochs=50, nesterov=False, weight_decay=3e-4,
                         shuffle=True, arch=ArchConfig(lr=3e-4), train_portion=0.5)
    assert paper_mismatches(paper) == []
    assert paper_mismatches(SearchConfig(**{**paper.__dict__, "options": {"t_max": 30}})) != []


def test_beta_is_stepped_per_epoch_and_recorded():
    m = method(epochs=4)
    data = batches(4)
    seen = []
    for epoch in range(4):
        m.set_epoch(epoch)
        for i in (0, 2):
            m.train_step(*data[i], *data[i + 1])
            seen.append(m.beta.item())
        assert m.end_epoch(epoch + 1, None)["aux_beta"] == m.beta_value
    assert seen == [1.0, 1.0, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25]  # β never reaches 0 in training


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_the_aux_path_is_on_in_the_alpha_step_the_weight_step_and_evaluation(space):
    m = method(space, aux_op="conv1")
    m.set_epoch(1)
    seen = []
    forward = m.model.forward

    def spy(x, weights=None, probe=None):
        seen.append({kind: (type(w), float(w.beta)) for kind, w in weights.items()})
        return forward(x, weights, probe)

    m.model.forward = spy
    data = batches(3)
    m.train_step(*data[0], *data[1])
    m.logits(data[2][0])
    assert len(seen) == 3
    assert all(v == (AuxiliarySkip, m.beta_value) for record in seen for v in record.values())
    assert 0 < m.beta_value < 1


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_aux_weights_train_with_sgd_and_the_clip_never_with_adam(space):
    m = method(space, aux_op="conv1")
    aux = [p for name, p in m.model.named_parameters() if ".aux." in name]
    assert aux and all(any(p is q for q in m.weights) for p in aux)  # in model.parameters(): SGD and the clip
    sgd = m.w_optimizer.param_groups[0]["params"]
    adam = [p for group in m.a_optimizer.param_groups for p in group["params"]]
    assert all(any(p is q for q in sgd) for p in aux)
    assert not any(p is q for p in aux for q in adam)
    assert all(any(p is a for a in m.alphas) for p in adam) and len(adam) == len(m.kinds)
    before = [p.detach().clone() for p in aux]
    m.set_epoch(0)
    m.train_step(*batches(2)[0], *batches(2)[1])
    assert all(not torch.equal(p.detach(), p0) for p, p0 in zip(aux, before, strict=True))


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_the_genotype_is_darts_for_the_same_alpha(space):
    m = method(space)
    with torch.no_grad():
        for a in m.alphas:
            a.copy_(torch.randn(a.shape, generator=torch.Generator().manual_seed(7)))
    reference = Darts(SPACES[space][1](4, 1), SPACES[space][0], SearchConfig(space=space, method="darts1",
                                                                             arch=ArchConfig(lr=0.01), epochs=4))
    with torch.no_grad():
        for a, b in zip(reference.alphas, m.alphas, strict=True):
            a.copy_(b)
    assert str(m.genotype()) == str(reference.genotype())
    assert m.genotype() == m.space.genotype_from_weights({k: a.softmax(-1) for k, a in m.alpha.items()})


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_one_training_step_fused_equals_unfused(space):
    data = batches(4)
    results = []
    for fused in (True, False):
        m = method(space, fused=fused, aux_op="conv1")
        m.set_epoch(1)
        m.train_step(*data[0], *data[1])
        m.train_step(*data[2], *data[3])
        results.append({**{k: v.clone() for k, v in m.model.state_dict().items()},
                        **{f"alpha{i}": a.detach().clone() for i, a in enumerate(m.alphas)}})
    assert results[0].keys() == results[1].keys()
    for name, value in results[0].items():
        torch.testing.assert_close(value, results[1][name], rtol=1e-4, atol=2e-5, msg=lambda s, n=name: f"{n}: {s}")

