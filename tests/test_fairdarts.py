"""FairDARTS (FAMILY.md "FairDARTS"): sigmoid mixing from α = 0, the zero-one loss (value, range, gradient, N),
both steps and the single-level step, `none` inert on NB201, the NB201 derivations and the DARTS-space
parses, sparse genotypes (validation, JSON, empty cells) and their DCO cells in the evaluation network, and a
FairDARTS genotype through the retraining entry point."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
import torch
from fakes import write_fake_cifar10
from method_helpers import random_batches as batches
from torch import nn

from isdarts.config import ArchConfig, SearchConfig
from isdarts.config.paper import paper_mismatches
from isdarts.config.train import RetrainConfig
from isdarts.data.cifar import load_cifar10, locate_cifar10
from isdarts.errors import GenotypeError
from isdarts.pipeline.retrain import RetrainRun, retrain_run
from isdarts.search.fairdarts import FairDarts, zero_one_loss
from isdarts.spaces.darts.genotype import DartsGenotype, load_named_genotype
from isdarts.spaces.darts.network import EvalCell, NetworkCIFAR
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")
SPACES = {"nb201": (NB201, Nb201Supernet), "darts": (DARTS_SPACE, DartsSupernet)}
METHOD = "fairdarts"


def cfg(space: str = "nb201", **options) -> SearchConfig:
    return SearchConfig(space=space, method=METHOD, arch=ArchConfig(lr=0.01, betas=(0.9, 0.999)), epochs=4,
                        options=options)


def method(space: str = "nb201", seed: int = 0, **options) -> FairDarts:
    torch.manual_seed(seed)
    return FairDarts(SPACES[space][1](4, 1), SPACES[space][0], cfg(space, **options),
                     torch.Generator().manual_seed(seed))


def set_alpha(m: FairDarts, values: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for kind, alpha in m.alpha.items():
            alpha.copy_(values[kind])


# ---------------------------------------------------------------- options, init, mixing
def test_option_defaults_per_space_and_the_darts_paper_row():
    nb, da = cfg("nb201").options, cfg("darts").options
    common = {"w01": 10.0, "sep_loss": "l2", "threshold": 0.85, "parse": "threshold_sparse",
              "nb201_derive": "argmax_nonnone", "single_level": False, "empty_cell": "darts",
              "step_order": "alpha_first", "lr_epoch_offset": 0}
    assert {k: nb[k] for k in common} == common == {k: da[k] for k in common}
    assert nb["include_none"] is True and da["include_none"] is False
    paper = SearchConfig(space="darts", method=METHOD, C=16, N=2, epochs=50, batch_size=128, lr=0.005, lr_min=0.001,
                         nesterov=False, weight_decay=3e-4, shuffle=True,
                         arch=ArchConfig(lr=3e-3, betas=(0.9, 0.999), weight_decay=1e-3), train_portion=0.5)
    assert paper_mismatches(paper) == []
    darts_betas = dataclasses.replace(paper, arch=ArchConfig(lr=3e-3, betas=(0.5, 0.999), weight_decay=1e-3))
    assert paper_mismatches(darts_betas) == ["arch.betas=(0.5, 0.999) (paper: (0.9, 0.999))"]


@pytest.mark.parametrize(("space", "include_none", "count", "none_alive"), [
    ("nb201", True, 24, True), ("nb201", False, 24, False), ("darts", False, 196, False), ("darts", True, 196, True),
])
def test_alpha_starts_at_zero_and_l01_counts_the_used_non_none_entries(space, include_none, count, none_alive):
    m = method(space, include_none=include_none)
    none = SPACES[space][0].ops.index("none")
    for kind, alpha in m.alpha.items():
        assert torch.equal(alpha.detach(), torch.zeros_like(alpha))
        assert bool(m.model.get_mask(kind)[:, none].eq(1).all()) is none_alive
        weights = m.relax(kind, alpha)
        assert torch.equal(weights[:, none], torch.full_like(weights[:, none], 0.5 if none_alive else 0.0))
    assert m.l01_count == count
    assert m.arch_first and m.order == 1


def test_mixing_weights_are_independent_sigmoids_that_do_not_sum_to_one():
    m = method("darts")
    set_alpha(m, {k: torch.randn(14, 8) for k in m.kinds})
    none = DARTS_SPACE.ops.index("none")
    for kind, alpha in m.alpha.items():
        w = m.arch_weights()[kind]
        expect = torch.sigmoid(alpha.detach())
        expect[:, none] = 0.0  # masked out of the supernet
        torch.testing.assert_close(w.detach(), expect, rtol=0, atol=0)
    assert not torch.allclose(w.sum(-1), torch.ones(14))


def test_a_second_order_row_or_a_bad_threshold_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        method(threshold=1.0)
    with pytest.raises(ValueError, match="lr_epoch_offset"):
        method(lr_epoch_offset=2)


def test_lr_epoch_offset_shifts_the_cosine_by_one_epoch():
    plain, shifted = method(), method(lr_epoch_offset=1)
    assert shifted.set_epoch(0) == plain.set_epoch(1)
    assert shifted.set_epoch(3) == pytest.approx(plain.lr_min)


# ---------------------------------------------------------------- the zero-one loss
def test_l01_is_zero_with_zero_gradient_at_init_and_stays_in_its_range():
    m = method("darts")
    l01 = m.zero_one_loss()
    grads = torch.autograd.grad(l01, m.alphas)
    assert l01.item() == 0.0 and all(torch.equal(g, torch.zeros_like(g)) for g in grads)
    for scale in (0.5, 3.0, 50.0):
        set_alpha(m, {k: scale * torch.randn(14, 8) for k in m.kinds})
        l2 = m.zero_one_loss().item()
        l1 = zero_one_loss(m.alphas, m.l01_entries, m.l01_count, "l1").item()
        assert -0.25 <= l2 <= 0.0 and -0.5 <= l1 <= 0.0
        assert -2.5 <= m.w01 * l2 <= 0.0
    set_alpha(m, {k: torch.full((14, 8), 40.0) for k in m.kinds})  # every σ saturated
    assert m.zero_one_loss().item() == pytest.approx(-0.25)


@pytest.mark.parametrize("kind", ["l2", "l1"])
def test_l01_gradient_matches_the_formula_and_finite_differences(kind):
    gen = torch.Generator().manual_seed(3)
    alphas = [torch.randn(6, 5, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(2)]
    used = [torch.ones(6, 5, dtype=torch.float64) for _ in alphas]
    for u in used:
        u[:, 0] = 0.0  # `none`
    n = 2 * 6 * 4
    (grad,) = torch.autograd.grad(zero_one_loss(alphas, used, n, kind), alphas[0])
    s = torch.sigmoid(alphas[0].detach())
    dist = (s - 0.5) if kind == "l2" else torch.sign(s - 0.5) / 2
    torch.testing.assert_close(grad, -(2 / n) * dist * s * (1 - s) * used[0])
    eps = 1e-6
    for e, o in [(0, 1), (3, 4), (5, 2), (2, 0)]:
        plus, minus = [a.detach().clone() for a in alphas], [a.detach().clone() for a in alphas]
        plus[0][e, o] += eps
        minus[0][e, o] -= eps
        numeric = (zero_one_loss(plus, used, n, kind) - zero_one_loss(minus, used, n, kind)) / (2 * eps)
        assert grad[e, o].item() == pytest.approx(numeric.item(), abs=1e-9)


# ---------------------------------------------------------------- the steps
def test_both_steps_add_w01_l01_which_reaches_only_alpha():
    data = batches(2)
    a, b = method("nb201"), method("nb201", w01=0.0)
    values = {"cell": torch.randn(6, 5)}
    set_alpha(a, values)
    set_alpha(b, values)
    # α step: the gradient differs by exactly w01 * ∇L01.
    ga, gb = a.arch_grads(*data[0], *data[1]), b.arch_grads(*data[0], *data[1])
    (dl01,) = torch.autograd.grad(a.zero_one_loss(), a.alphas)
    torch.testing.assert_close(ga[0] - gb[0], 10.0 * dl01)
    # Weight step: the same weight gradients with and without L01, and the CE is what it returns.
    for m in (a, b):
        m.model.zero_grad(set_to_none=True)
    loss_a, _ = a.weight_backward(*data[0])
    loss_b, _ = b.weight_backward(*data[0])
    assert loss_a.item() == pytest.approx(loss_b.item())
    for pa, pb in zip(a.weights, b.weights, strict=True):
        torch.testing.assert_close(pa.grad, pb.grad)
    assert not torch.allclose(a.alphas[0].grad, b.alphas[0].grad)


def test_the_alpha_step_comes_first():
    m = method("nb201")
    order = []
    real_arch, real_weight = m._arch_step, m._weight_step
    m._arch_step = lambda *a: order.append("alpha") or real_arch(*a)
    m._weight_step = lambda *a: order.append("w") or real_weight(*a)
    data = batches(2)
    m.train_step(*data[0], *data[1])
    assert order == ["alpha", "w"]


@pytest.mark.parametrize("single_level", [False, True])
def test_none_stays_exactly_zero_on_nb201_while_the_other_alphas_move(single_level):
    m = method("nb201", single_level=single_level)
    data = batches(8)
    for epoch in range(2):
        m.set_epoch(epoch)
        for i in range(0, 8, 2):
            m.train_step(*data[i], *data[i + 1])
        record = m.end_epoch(epoch + 1, None)
        assert record["arch_loss"] is not None and record["zero_one_loss"] <= 0.0
    alpha = m.alphas[0].detach()
    assert torch.equal(alpha[:, 0], torch.zeros(6))  # `none`: no CE gradient, zero L01 and weight-decay terms
    assert bool((alpha[:, 1:] != 0).all())


def test_single_level_uses_the_train_batch_only_and_steps_both_optimisers():
    data = batches(2)
    m = method("nb201", single_level=True)
    poisoned = (torch.full_like(data[1][0], float("nan")), data[1][1])  # the valid batch must go unused
    ref = copy.deepcopy(m)
    w0 = [p.detach().clone() for p in m.weights]
    loss, _ = m.train_step(*data[0], *poisoned)
    assert math.isfinite(loss.item())
    assert all(not torch.equal(p.detach(), q) for p, q in zip(m.weights[:1], w0[:1], strict=True))
    # α moved by one Adam step on ∇(CE + w01·L01) of the train batch (clipped with the weights, as on NB201).
    ref.w_optimizer.zero_grad(set_to_none=True)
    ref_loss, _ = ref.loss(*data[0])
    (ref_loss + ref.w01 * ref.zero_one_loss()).backward()
    nn.utils.clip_grad_norm_([*ref.weights, *ref.alphas], ref.grad_clip)
    ref.a_optimizer.step()
    torch.testing.assert_close(m.alphas[0].detach(), ref.alphas[0].detach())
    assert m.alphas[0].grad is None


def test_single_level_resumes_exactly():
    data = batches(6)
    m = method("nb201", single_level=True)
    m.set_epoch(0)
    m.train_step(*data[0], *data[1])
    state = copy.deepcopy(m.state_dict())
    twin = method("nb201", seed=9, single_level=True)
    twin.load_state_dict(state)
    for x in (m, twin):
        x.set_epoch(0)
        x.train_step(*data[2], *data[3])
    torch.testing.assert_close(m.alphas[0].detach(), twin.alphas[0].detach(), rtol=0, atol=0)
    assert m.end_epoch(1, None) == twin.end_epoch(1, None)


# ---------------------------------------------------------------- NB201 derivations
def test_nb201_derivations_a_b_c():
    m = method("nb201")
    alpha = torch.zeros(6, 5)
    alpha[0, 3] = 3.0    # nor_conv_3x3, σ 0.95: kept by all three
    alpha[1, 1] = 1.0    # skip, σ 0.73: (a), (b); below τ for (c)
    alpha[2, 1:] = -1.0  # every non-none σ < 0.5: (b) and (c) say none
    alpha[2, 4] = -0.5   # ... and (a) takes the best of them, avg_pool
    alpha[3, 2], alpha[3, 3] = 30.0, 31.0  # both σ == 1.0 in float32: the logits decide (nor_conv_3x3)
    # edges 4, 5 stay at zero: ties go to the lower op (a, b: skip), σ 0.5 < τ (c: none)
    set_alpha(m, {"cell": alpha})
    derived = {rule: m._edge_genotype(rule).ops for rule in ("argmax_nonnone", "argmax_all", "threshold_none")}
    assert derived["argmax_nonnone"] == (
        "nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_3x3", "skip_connect", "skip_connect")
    assert derived["argmax_all"] == (
        "nor_conv_3x3", "skip_connect", "none", "nor_conv_3x3", "skip_connect", "skip_connect")
    assert derived["threshold_none"] == ("nor_conv_3x3", "none", "none", "nor_conv_3x3", "none", "none")
    assert m.genotype().ops == derived["argmax_nonnone"]
    assert method("nb201", nb201_derive="threshold_none").genotype().ops == ("none",) * 6
    record = m.end_epoch(1, None)["derivations"]
    assert {name: r["genotype"] for name, r in record.items()} == {
        name: str(m._edge_genotype(name)) for name in derived}
    assert all("benchmark" in r["cell"] for r in record.values())


# ---------------------------------------------------------------- DARTS-space parses
def sigmoid_of(m: FairDarts, kind: str, op: str, node: int, j: int) -> float:
    e = DARTS_SPACE.edges.index(f"{node}<-{j}")
    return torch.sigmoid(m.alpha[kind][e, DARTS_SPACE.ops.index(op)].double()).item()


SEARCH_NAME = {"sep_conv_3x3": "dua_sepc_3x3", "sep_conv_5x5": "dua_sepc_5x5", "dil_conv_3x3": "dil_sepc_3x3",
               "dil_conv_5x5": "dil_sepc_5x5"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_parses_keep_at_most_two_inputs_and_only_ops_that_reach_tau(seed):
    m = method("darts")
    gen = torch.Generator().manual_seed(seed)
    set_alpha(m, {k: 3.0 * torch.randn(14, 8, generator=gen) for k in m.kinds})
    sparse = m._node_genotype("threshold_sparse", "error")[0]
    edge = m._node_genotype("threshold_edge", "error")[0]
    assert sparse.sparse and edge.sparse
    for genotype, most in ((sparse, 2), (edge, None)):
        for kind in m.kinds:
            for node, entries in enumerate(genotype.cell(kind)[0]):
                if most is not None:
                    assert len(entries) <= most and len({j for _, j in entries}) == len(entries)
                for op, j in entries:
                    assert op != "none"
                    assert sigmoid_of(m, kind, SEARCH_NAME.get(op, op), node, j) >= 0.85
    # threshold_edge emits a superset of threshold_sparse's entries.
    for kind in m.kinds:
        for a, b in zip(sparse.cell(kind)[0], edge.cell(kind)[0], strict=True):
            assert set(a) <= set(b)


def test_threshold_sparse_ranks_edges_and_ops_by_logits():
    m = method("darts")
    alpha = torch.full((14, 8), -5.0)
    ops = DARTS_SPACE.ops
    e = {key: DARTS_SPACE.edges.index(key) for key in ("0<-0", "0<-1", "1<-0", "1<-1", "1<-2", "2<-3", "3<-4")}
    alpha[e["0<-0"], ops.index("skip_connect")] = 30.0
    alpha[e["0<-0"], ops.index("dua_sepc_3x3")] = 31.0  # both σ 1.0 in float32; the logit picks the conv
    alpha[e["0<-1"], ops.index("max_pool_3x3")] = 2.0    # σ 0.88
    alpha[e["1<-0"], ops.index("avg_pool_3x3")] = 1.0    # σ 0.73 < τ: node 1 keeps only 1<-2 ...
    alpha[e["1<-1"], ops.index("skip_connect")] = 0.5
    alpha[e["1<-2"], ops.index("dil_sepc_3x3")] = 4.0
    alpha[e["2<-3"], ops.index("dil_sepc_5x5")] = 4.0    # node 2 reads node 1 (present)
    alpha[e["3<-4"], ops.index("skip_connect")] = 4.0    # node 3 reads node 2
    alpha[:, ops.index("none")] = 50.0  # masked out: never ranked
    set_alpha(m, {"normal": alpha, "reduce": alpha})
    genotype = m.genotype()
    assert genotype.sparse
    assert genotype.normal == (
        (("sep_conv_3x3", 0), ("max_pool_3x3", 1)), (("dil_conv_3x3", 2),), (("dil_conv_5x5", 3),),
        (("skip_connect", 4),))
    assert genotype.normal_concat == (2, 3, 4, 5)
    edge = m._node_genotype("threshold_edge", "error")[0]
    assert edge.normal[0] == (("sep_conv_3x3", 0), ("skip_connect", 0), ("max_pool_3x3", 1))
    darts = m._node_genotype("darts", "error")[0]
    assert not darts.sparse and all(len(node) == 2 for node in darts.normal)
    assert darts == DARTS_SPACE.genotype_from_weights(
        {k: a.detach().masked_fill(~m.usable[k], float("-inf")) for k, a in m.alpha.items()})


def test_an_empty_threshold_cell_takes_the_darts_parse_or_raises():
    m = method("darts")  # at init every σ is 0.5 < τ: both threshold cells are empty
    genotype = m.genotype()
    darts = m._node_genotype("darts", "error")[0]
    assert genotype.sparse and genotype.normal == darts.normal and genotype.reduce == darts.reduce
    record = m.end_epoch(1, None)
    assert record["empty_cells"] == ["normal", "reduce"]
    assert record["derivations"]["threshold_sparse"] == {"genotype": None, "cell": None}
    assert record["derivations"]["darts"]["genotype"] == str(darts)
    with pytest.raises(GenotypeError, match="normal: no node of this sparse cell exists"):
        method("darts", empty_cell="error").genotype()


# ---------------------------------------------------------------- sparse genotypes and DCO cells
SPARSE_NORMAL = [
    [["sep_conv_3x3", 0], ["skip_connect", 1]],
    [],                                  # node 1 (state 3) is absent
    [["skip_connect", 3]],               # reads only the absent node: absent too
    [["max_pool_3x3", 2], ["dil_conv_3x3", 3], ["skip_connect", 0]],  # 3 entries; the one from state 3 is dead
]
SPARSE_REDUCE = [[["max_pool_3x3", 0]], [["skip_connect", 2], ["avg_pool_3x3", 1]], [], []]


def sparse_genotype() -> DartsGenotype:
    return DartsGenotype.sparse_cells(SPARSE_NORMAL, SPARSE_REDUCE)


def test_sparse_genotype_concat_json_and_validation():
    g = sparse_genotype()
    assert (g.normal_concat, g.reduce_concat) == ((2, 5), (2, 3))
    assert g.live_nodes("normal")[1:3] == ((), ()) and g.live_nodes("normal")[3] == (
        ("max_pool_3x3", 2), ("skip_connect", 0))
    data = json.loads(json.dumps(g.to_json()))
    assert data["sparse"] is True and DartsGenotype.from_json(data) == g
    assert str(g).startswith("sparse normal: ")
    with pytest.raises(GenotypeError, match=r"normal_concat: a sparse cell concatenates exactly .*\[2, 5\]"):
        DartsGenotype.from_json({**data, "normal_concat": [2, 3, 4, 5]})
    with pytest.raises(GenotypeError, match="reduce: no node of this sparse cell exists"):
        DartsGenotype.sparse_cells(SPARSE_NORMAL, [[], [["skip_connect", 2]], [], []])
    # Without the flag the two-pairs rule, the JSON and the strings are as before.
    plain = load_named_genotype("DARTS_V2")
    assert "sparse" not in plain.to_json() and not str(plain).startswith("sparse")
    with pytest.raises(GenotypeError, match="expected 2"):
        DartsGenotype.from_json({**data, "sparse": False})


def test_dco_cell_sums_present_nodes_and_concatenates_only_them():
    cell = EvalCell(sparse_genotype(), 4, 4, 4, reduction=False, reduction_prev=False).eval()
    assert cell.multiplier == 2 and len(cell.ops) == 4  # the dead entry is not built
    s0, s1 = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    out = cell(s0, s1)
    assert out.shape == (2, 2 * 4, 8, 8)
    p0, p1 = cell.preprocess0(s0), cell.preprocess1(s1)
    n0 = cell.ops[0](p0) + p1
    n3 = nn.functional.max_pool2d(n0, 3, 1, 1) + p0
    torch.testing.assert_close(out, torch.cat([n0, n3], dim=1))


def test_dco_cell_drops_whole_node_sums_identities_included():
    g = DartsGenotype.sparse_cells([[["skip_connect", 1]], [], [], []], [[["skip_connect", 1]], [], [], []])
    cell = EvalCell(g, 4, 4, 4, reduction=False, reduction_prev=False).train()
    torch.manual_seed(0)
    out = cell(torch.randn(16, 4, 4, 4), torch.randn(16, 4, 4, 4), drop_prob=0.5)
    dropped = out.flatten(1).abs().sum(1) == 0
    assert bool(dropped.any()) and not bool(dropped.all())


def test_network_chains_the_present_widths_and_runs():
    g = sparse_genotype()
    net = NetworkCIFAR(g, C=4, layers=5, auxiliary=True)
    assert [c.multiplier for c in net.cells] == [2, 2, 2, 2, 2]
    assert net.classifier.in_features == 2 * 16  # last cell: normal, C = 4 * 2 * 2, two present nodes
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux.shape == (2, 10)


def test_a_searched_fairdarts_genotype_retrains_through_the_pipeline_entry_point(tmp_path):
    root = tmp_path / "cifar"
    write_fake_cifar10(root, n_per_batch=10, n_test=30, seed=0)
    arrays = load_cifar10(locate_cifar10(root, download=False, subset_fallback=root))
    folder = tmp_path / "search"
    folder.mkdir()
    (folder / "genotype.json").write_text(json.dumps({**sparse_genotype().to_json(), "method": METHOD, "seed": 0}))
    run = RetrainRun(
        folder / "genotype.json",
        RetrainConfig(C=4, layers=3, epochs=1, warmup_epochs=0, batch_size=16, lr=0.05, auxiliary_weight=0.0,
                      drop_path_prob=0.2, cutout=4, log_every=1),
        image_size=16, train_images=32, test_images=16, seed=0, device="cpu", out_dir=tmp_path / "out",
        checkpoint_dir=tmp_path / "ckpt",
        run_info={"method": METHOD, "profile": "smoke", "paper_settings": False, "paper_mismatches": []},
    )
    metrics = retrain_run(run, arrays, tracking=False)
    assert metrics["genotype"] == str(sparse_genotype()) and math.isfinite(metrics["final_train_loss"])
    assert (tmp_path / "out" / "model.pt2").is_file()
