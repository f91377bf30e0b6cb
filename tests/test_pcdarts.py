"""PC-DARTS (FAMILY.md "PC-DARTS"): the channel shuffle, the partial-channel edge on both spaces (fused and
unfused, K=1 equal to DARTS bit for bit), edge normalisation, the frozen warm-up, the genotype, exact resumes
and a tiny search on each space."""

import io

import pytest
import torch
import yaml
from method_helpers import method_on_supernet
from method_helpers import random_batches as batches
from test_search_loop import ROOT, arrays, search  # noqa: F401 (fixture)

from isdarts.config import ArchConfig, SearchConfig, params_from_dict
from isdarts.config.paper import paper_mismatches
from isdarts.search.loop import build_method
from isdarts.search.pcdarts import PcDarts
from isdarts.search.speed import FastForward, SpeedPlan, apply_speed, configure_backends
from isdarts.spaces.darts.ops import DARTS_SEARCH_OPS, SEARCH_TO_EVAL, make_search_op
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import DartsSearchCell, DartsSupernet
from isdarts.spaces.nb201.genotype import NB201_OPS
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201SearchCell, Nb201Supernet
from isdarts.spaces.partial import PartialChannels, channel_shift, channel_shuffle, edge_nodes, normalise_edges

pytestmark = pytest.mark.usefixtures("one_thread")
SPACES = {"nb201": (NB201, Nb201Supernet), "darts": (DARTS_SPACE, DartsSupernet)}


# ---------------------------------------------------------------- the shuffle
@pytest.mark.parametrize(("channels", "groups"), [(16, 4), (12, 3), (8, 2), (8, 8)])
def test_shuffle_is_the_index_permutation(channels, groups):
    x = torch.randn(2, channels, 3, 3)
    out = channel_shuffle(x, groups)
    for c in range(channels):
        torch.testing.assert_close(out[:, c], x[:, (c % groups) * (channels // groups) + c // groups], rtol=0, atol=0)
    assert torch.equal(out.flatten().sort().values, x.flatten().sort().values)  # the same multiset


def test_shuffle_1_is_the_identity_and_shift_rotates():
    x = torch.randn(2, 8, 3, 3)
    assert torch.equal(channel_shuffle(x, 1), x)
    assert torch.equal(channel_shift(x, 2), torch.cat([x[:, 2:], x[:, :2]], dim=1))


def test_shuffle_keeps_channels_last():
    x = torch.randn(2, 8, 3, 3).contiguous(memory_format=torch.channels_last)
    out = channel_shuffle(x, 4)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, channel_shuffle(x.contiguous(), 4))


# ---------------------------------------------------------------- one edge
@pytest.mark.parametrize("stride", [1, 2])
def test_edge_output_shape(stride):
    h = torch.randn(2, 16, 8, 8)
    pc = PartialChannels(torch.ones(14, 8), 4)
    op = make_search_op("dua_sepc_3x3", 4, stride)
    y = pc.combine(op(pc.op_part(h)), h, stride)
    assert y.shape == (2, 16, 8 // stride, 8 // stride)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("none_computed", [False, True])
def test_with_zero_op_outputs_the_edge_holds_the_bypass_at_the_shuffled_positions(stride, none_computed):
    k, channels = 4, 16
    h = torch.randn(2, channels, 8, 8)
    pc = PartialChannels(torch.ones(14, 8), k)
    mixed = None if none_computed else torch.zeros(2, channels // k, 8 // stride, 8 // stride)
    y = pc.combine(mixed, h, stride)
    bypass = h if stride == 1 else torch.nn.functional.max_pool2d(h, 2, 2)
    for c in range(channels):
        if c % k == 0:
            assert y[:, c].abs().max().item() == 0.0
        else:
            source = (c % k) * (channels // k) + c // k  # an index >= C/K: a bypass channel
            assert torch.equal(y[:, c], bypass[:, source])


def test_a_cell_whose_edges_keep_only_none_passes_the_bypass_on():
    k = 4
    cell = Nb201SearchCell(8, affine=False, track=False, fused=False, partial_channels=k)
    none = NB201_OPS.index("none")
    alive = tuple((none,) for _ in range(6))
    x = torch.randn(2, 8, 4, 4)
    out = cell(x, alive, PartialChannels(torch.rand(6, 5), k))

    def edge(h):
        return channel_shuffle(torch.cat([torch.zeros_like(h[:, : 8 // k]), h[:, 8 // k :]], dim=1), k)

    n1 = edge(x)
    n2 = edge(x) + edge(n1)
    torch.testing.assert_close(out, edge(x) + edge(n1) + edge(n2), rtol=0, atol=0)


# ---------------------------------------------------------------- supernets
def weights_of(space, gen, k, edge_norm):
    return {
        kind: PartialChannels(
            torch.rand(space.num_edges, space.num_ops, generator=gen), k,
            torch.rand(space.num_edges, generator=gen) if edge_norm else None,
        )
        for kind in space.kinds
    }


@pytest.mark.parametrize("space_name", ["nb201", "darts"])
@pytest.mark.parametrize("fused", [True, False])
def test_k1_partial_mixing_is_darts_bit_for_bit(space_name, fused):
    space, cls = SPACES[space_name]
    torch.manual_seed(0)
    reference = cls(4, 1, fused=fused)
    torch.manual_seed(0)
    built = cls(4, 1, fused=fused, partial_channels=1)
    assert reference.state_dict().keys() == built.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), built.state_dict().values(),
                                                 strict=True))
    gen = torch.Generator().manual_seed(1)
    tables = {kind: torch.rand(space.num_edges, space.num_ops, generator=gen, requires_grad=True)
              for kind in space.kinds}
    x = torch.randn(2, 3, 8, 8, generator=gen)
    want = reference(x, weights=tables)[1]
    got = built(x, weights={kind: PartialChannels(t, 1) for kind, t in tables.items()})[1]
    assert torch.equal(want, got)
    grads_want = torch.autograd.grad(want.square().sum(), list(tables.values()))
    grads_got = torch.autograd.grad(got.square().sum(), list(tables.values()))
    assert all(torch.equal(a, b) for a, b in zip(grads_want, grads_got, strict=True))
    # The per-edge loop at K=1 (edge weights of 1 force it) is the same sum in another order.
    ones = {kind: PartialChannels(t, 1, torch.ones(space.num_edges)) for kind, t in tables.items()}
    torch.testing.assert_close(built(x, weights=ones)[1], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("space_name", ["nb201", "darts"])
@pytest.mark.parametrize("edge_norm", [True, False])
def test_fused_and_unfused_partial_paths_agree(space_name, edge_norm):
    space, cls = SPACES[space_name]
    torch.manual_seed(0)
    fused = cls(8, 1, fused=True, partial_channels=4)
    unfused = cls(8, 1, fused=False, partial_channels=4)
    unfused.load_state_dict(fused.state_dict())
    gen = torch.Generator().manual_seed(2)
    weights = weights_of(space, gen, 4, edge_norm)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    a, b = fused(x, weights=weights)[1], unfused(x, weights=weights)[1]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    ga = torch.autograd.grad(a.square().sum(), list(fused.parameters()))
    gb = torch.autograd.grad(b.square().sum(), list(unfused.parameters()))
    for x_grad, y_grad in zip(ga, gb, strict=True):
        torch.testing.assert_close(x_grad, y_grad, rtol=1e-4, atol=1e-5)


def test_reduction_and_normal_cells_keep_their_shapes_with_partial_channels():
    x = torch.randn(2, 16, 8, 8)
    for reduction in (False, True):
        cell = DartsSearchCell(16, 16, 8, reduction=reduction, reduction_prev=False, affine=False, track=False,
                               partial_channels=4)
        out = cell(x, x, tuple(tuple(range(8)) for _ in range(14)), PartialChannels(torch.rand(14, 8), 4))
        assert out.shape == (2, 32, 4, 4) if reduction else out.shape == (2, 32, 8, 8)


def test_ops_are_built_at_c_over_k_and_c_not_divisible_by_k_is_refused():
    model = Nb201Supernet(8, 1, partial_channels=4)
    assert model.layers[0].edges[0][NB201_OPS.index("nor_conv_3x3")][1].in_channels == 2
    with pytest.raises(ValueError, match=r"K=4 .*\[6, 12, 24\]"):
        Nb201Supernet(6, 1, partial_channels=4)
    with pytest.raises(ValueError, match=r"K=3 .*\[4, 8, 16\]"):
        DartsSupernet(4, 1, partial_channels=3)
    with pytest.raises(ValueError, match="K=0"):
        DartsSupernet(4, 1, partial_channels=0)
    with pytest.raises(ValueError, match=r"even C/K .*\[1, 2, 4\] of the stage channels \[4, 8, 16\]"):
        DartsSupernet(4, 1, partial_channels=4)


def test_a_partial_supernet_takes_only_partial_weights_of_its_k():
    model = Nb201Supernet(8, 1, partial_channels=4)
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="partial channels K=4"):
        model(x, weights={"cell": torch.rand(6, 5)})
    with pytest.raises(ValueError, match="k=2"):
        model(x, weights={"cell": PartialChannels(torch.rand(6, 5), 2)})


@pytest.mark.parametrize("space", [NB201, DARTS_SPACE])
def test_each_nodes_edge_weights_sum_to_one(space):
    beta = torch.randn(space.num_edges)
    b = normalise_edges(beta, space.edges)
    nodes = edge_nodes(space.edges)
    assert [len(n) for n in nodes] == ([1, 2, 3] if space is NB201 else [2, 3, 4, 5])
    for node in nodes:
        assert b[node].sum().item() == pytest.approx(1.0, abs=1e-6)
        assert bool((b[node] > 0).all())
    if space is NB201:
        assert b[0].item() == 1.0  # node 1's one edge


# ---------------------------------------------------------------- the method
def cfg(space: str = "nb201", **options) -> SearchConfig:
    return SearchConfig(space=space, method="pcdarts", arch=ArchConfig(lr=0.01), epochs=4, options=options)


def method(space: str = "nb201", seed: int = 0, fused: bool = True, **options) -> PcDarts:
    return method_on_supernet(PcDarts, cfg(space, **options), 8, seed, fused)


def test_options_defaults_and_the_supernet_it_asks_for():
    for space in ("nb201", "darts"):
        options = cfg(space).options
        assert {k: options[k] for k in ("k", "edge_norm", "arch_warmup_epochs", "shuffle_mode", "step_order",
                                         "lr_epoch_offset")} == {
            "k": 4, "edge_norm": True, "arch_warmup_epochs": 15, "shuffle_mode": "shuffle",
            "step_order": "alpha_first", "lr_epoch_offset": 0}
    assert PcDarts.supernet_options(cfg(k=2)) == {"partial_channels": 2}
    built = build_method(cfg("nb201", k=2), 10, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert built.model.partial_channels == 2 and built.arch_first
    with pytest.raises(ValueError, match="partial_channels=4"):
        PcDarts(Nb201Supernet(4, 1), NB201, cfg())


def test_the_darts_paper_row_is_expressible():
    paper = SearchConfig(space="darts", method="pcdarts", C=16, N=2, epochs=50, batch_size=256, lr=0.1, lr_min=0.0,
                         nesterov=False, weight_decay=3e-4, shuffle=True, arch=ArchConfig(lr=6e-4), train_portion=0.5)
    assert paper_mismatches(paper) == []


def test_beta_is_drawn_after_alpha_from_the_same_generator():
    m = method("darts")
    gen = torch.Generator().manual_seed(0)
    draws = [1e-3 * torch.randn(shape, generator=gen) for shape in ((14, 8), (14, 8), (14,), (14,))]
    for got, want in zip([*m.alphas, *m.betas], draws, strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=0)
    assert len(m.a_optimizer.param_groups[0]["params"]) == 4
    assert method(edge_norm=False).betas == []


def test_alpha_and_beta_stay_frozen_and_adam_empty_during_the_warm_up():
    m = method(arch_warmup_epochs=2)
    before = [p.detach().clone() for p in [*m.alphas, *m.betas]]
    data = batches(4)
    for epoch in (0, 1):
        m.set_epoch(epoch)
        m.train_step(*data[0], *data[1])
        m.train_step(*data[2], *data[3])
        assert m.end_epoch(epoch + 1, None)["arch_loss"] is None
    for p, p0 in zip([*m.alphas, *m.betas], before, strict=True):
        assert torch.equal(p.detach(), p0)
    assert m.a_optimizer.state_dict()["state"] == {}
    m.set_epoch(2)
    m.train_step(*data[0], *data[1])
    assert all(not torch.equal(p.detach(), p0) for p, p0 in zip([*m.alphas, *m.betas], before, strict=True))
    assert len(m.a_optimizer.state_dict()["state"]) == 2
    record = m.end_epoch(3, None)
    assert record["arch_loss"] is not None and len(record["beta"]) == 6 and record["arch_frozen"] is False


def test_the_alpha_step_comes_first_and_moves_beta_only_with_edge_norm():
    m = method(arch_warmup_epochs=0, edge_norm=False)
    order = []
    real_arch, real_weight = m._arch_step, m._weight_step
    m._arch_step = lambda *a: order.append("alpha") or real_arch(*a)
    m._weight_step = lambda *a: order.append("w") or real_weight(*a)
    m.set_epoch(0)
    m.train_step(*batches(2)[0], *batches(2)[1])
    assert order == ["alpha", "w"]
    assert m.end_epoch(1, None)["beta"] is None
    assert all(isinstance(w, PartialChannels) and w.edge_weights is None for w in m.forward_weights().values())


def test_lr_epoch_offset_shifts_the_cosine_by_one_epoch():
    plain, shifted = method(), method(lr_epoch_offset=1)
    assert shifted.set_epoch(0) == plain.set_epoch(1)
    assert shifted.set_epoch(3) == pytest.approx(plain.lr_min)
    with pytest.raises(ValueError, match="lr_epoch_offset"):
        method(lr_epoch_offset=2)


def test_the_genotype_never_holds_none_and_beta_only_ranks_edges():
    m = method("darts")
    with torch.no_grad():
        for alpha in m.alphas:
            alpha.normal_()
            alpha[:, 0] += 10.0  # `none` dominates every edge
    best = {kind: [max(range(1, 8), key=lambda o, e=e: a[e, o].item()) for e in range(14)]
            for kind, a in m.alpha.items()}
    for scale in (1.0, 10.0, -50.0):
        with torch.no_grad():
            for beta in m.betas:
                beta.normal_().mul_(scale)
        genotype = m.genotype()
        for kind, cell in (("normal", genotype.normal), ("reduce", genotype.reduce)):
            for node, inputs in enumerate(cell):
                assert len(inputs) == 2 and all(op != "none" for op, _ in inputs)
                for op, j in inputs:  # each kept edge's op is its argmax non-`none` α, whatever β is
                    assert op == SEARCH_TO_EVAL[DARTS_SEARCH_OPS[best[kind][DARTS_SPACE.edges.index(f"{node}<-{j}")]]]


def test_beta_never_changes_an_nb201_genotype():
    m = method()
    with torch.no_grad():
        m.alphas[0].normal_()
    want = tuple(m.alphas[0].argmax(-1).tolist())
    for scale in (1.0, 100.0, -100.0):
        with torch.no_grad():
            m.betas[0].normal_().mul_(scale)
        assert m.genotype().op_indices() == want


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_state_round_trip_resumes_identically(space):
    data = batches(4)
    a = method(space, arch_warmup_epochs=1)
    a.set_epoch(1)
    a.train_step(*data[0], *data[1])
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = method(space, seed=1, arch_warmup_epochs=1)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    for m in (a, b):
        m.set_epoch(1)
        m.train_step(*data[2], *data[3])
    for pa, pb in zip([*a.alphas, *a.betas, *a.weights], [*b.alphas, *b.betas, *b.weights], strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


# ---------------------------------------------------------------- end to end
def pcdarts_cfg(space: str):
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    raw["nb201"]["search"].update(C=4, N=1, epochs=2, batch_size=16, log_every=1)
    raw["darts"]["search"].update(C=4, N=1, epochs=2, batch_size=16, log_every=1, image_size=8, train_images=32,
                                  test_images=16)
    # K=2: the DARTS space's stride-2 skip (FactorizedReduce) needs an even C/K at C=4.
    options = {"arch": {"lr": 0.003, "betas": [0.5, 0.999], "weight_decay": 0.001}, "train_portion": 0.5,
               "k": 2, "arch_warmup_epochs": 1}
    raw["nb201"]["methods"], raw["nb201"]["options"] = ["pcdarts"], {"pcdarts": options}
    raw["darts"]["methods"] = ["pcdarts"]
    raw["darts"]["options"]["pcdarts"] = options
    raw["darts"]["options"]["isdarts"]["shrink"] = {"steps": 1, "interval": 1}
    raw["darts"]["sweep"]["epochs"] = 21
    params = params_from_dict(raw)
    return params.nb201.search("pcdarts") if space == "nb201" else params.darts.runs.search("pcdarts")


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_a_tiny_search_runs_on_every_space(arrays, tmp_path, space):  # noqa: F811
    config = pcdarts_cfg(space)
    assert config.option("k") == 2 and config.option("edge_norm") is True
    result = search(config, arrays, tmp_path / "run")
    epochs = result["history"]["epochs"]
    assert len(epochs) == 2 and result["genotype"]["method"] == "pcdarts"
    assert epochs[0]["arch_loss"] is None and epochs[0]["arch_frozen"] is True
    assert epochs[1]["arch_loss"] is not None and epochs[1]["arch_frozen"] is False
    beta = epochs[1]["beta"] if space == "nb201" else epochs[1]["beta"]["normal"]
    assert len(beta) == (6 if space == "nb201" else 14)
    assert "none" not in result["metrics"]["genotype"] or space == "nb201"


# ---------------------------------------------------------------- the speed settings
def test_compiled_and_bf16_channels_last_steps_run_the_partial_strategy():
    """torch.compile (aot_eager: dynamo's capture of the PartialChannels argument) steps as eager does; bf16
    autocast with channels-last (the CUDA defaults) runs and keeps the loss finite."""
    data = batches(2)
    states = []
    for plan in (None, SpeedPlan(channels_last=False, amp=False, compile=True, cudnn_benchmark=False,
                                 compile_backend="aot_eager")):
        m = method(arch_warmup_epochs=0)
        if plan is not None:
            configure_backends(plan)
            m.model.forward = FastForward(m.model, plan)
        m.set_epoch(0)
        for _ in range(2):
            m.train_step(*data[0], *data[1])
        states.append([p.detach().clone() for p in [*m.alphas, *m.betas, *m.weights]])
    for a, b in zip(*states, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    m = method("darts", arch_warmup_epochs=0)
    apply_speed(m.model, SpeedPlan(channels_last=True, amp=True, compile=False, cudnn_benchmark=False))
    m.set_epoch(0)
    loss, _ = m.train_step(*data[0], *data[1])
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in [*m.alphas, *m.betas])
