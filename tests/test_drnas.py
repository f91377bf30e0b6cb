"""DrNAS (FAMILY.md "## 1. DrNAS"): the Dirichlet draw and its pathwise gradient, masking, the KL and l2 anchors,
the per-stage α warm-up, pruning and net2wider widening of progressive learning, exact resumes (across the stage
boundary too) and tiny searches on both spaces."""

import io

import pytest
import torch
import yaml
from method_helpers import random_batches as batches
from test_search_loop import ROOT, arrays, search, strip_timing  # noqa: F401 (fixture)
from torch.distributions import Dirichlet

from isdarts.config import ArchConfig, SearchConfig, params_from_dict
from isdarts.config.paper import paper_mismatches
from isdarts.search.darts import masked_softmax
from isdarts.search.drnas import (
    DrNas,
    concentration,
    dirichlet_rsample,
    kl_to_uniform,
    prune_rows,
    renormalise,
    widening_transforms,
)
from isdarts.search.loop import build_method
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201Supernet
from isdarts.spaces.partial import PartialChannels

pytestmark = pytest.mark.usefixtures("one_thread")
SPACES = {"nb201": (NB201, Nb201Supernet, 8), "darts": (DARTS_SPACE, DartsSupernet, 4)}  # space, class, C


def cfg(space: str = "nb201", epochs: int = 4, **options) -> SearchConfig:
    return SearchConfig(space=space, method="drnas", C=SPACES[space][2], N=1, arch=ArchConfig(lr=0.01), epochs=epochs,
                        options=options)


def method(space: str = "nb201", seed: int = 0, epochs: int = 4, **options) -> DrNas:
    if space == "darts":
        options = {"progressive": False, **options}  # progressive by default there; one stage unless asked
    config = cfg(space, epochs, **options)
    space_obj, cls, channels = SPACES[space]
    torch.manual_seed(seed)
    model = cls(channels, 1, fused=config.fused_ops, **DrNas.supernet_options(config))
    return DrNas(model, space_obj, config, torch.Generator().manual_seed(seed))


def progressive(space: str = "darts", **options) -> DrNas:
    """Two stages of 2 epochs; DARTS space at C=4 with K 2 -> 1, NB201 at C=8 with K 4 -> 2."""
    ks = {"k": 2, "k_final": 1} if space == "darts" else {"k": 4, "k_final": 2}
    return method(space, epochs=4, **{"progressive": True, "stage_epochs": 2, "keep_final": 3,
                                      "arch_warmup_epochs": 0, **ks, **options})


# ---------------------------------------------------------------- options and paper rows
def test_option_defaults_per_space():
    nb201, darts = cfg("nb201").options, cfg("darts").options
    assert {k: nb201[k] for k in ("reg_type", "reg_scale", "include_none", "k", "arch_warmup_epochs",
                                  "progressive", "step_order")} == {
        "reg_type": "l2", "reg_scale": 1e-3, "include_none": True, "k": 1, "arch_warmup_epochs": 0,
        "progressive": False, "step_order": "alpha_first"}
    assert {k: darts[k] for k in ("include_none", "k", "k_final", "keep_final", "stage_epochs",
                                  "arch_warmup_epochs", "progressive")} == {
        "include_none": False, "k": 6, "k_final": 4, "keep_final": 4, "stage_epochs": 0, "arch_warmup_epochs": 10,
        "progressive": True}
    assert DrNas.supernet_options(cfg(k=4)) == {"partial_channels": 4}
    built = build_method(cfg("nb201", k=2), 10, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert built.model.partial_channels == 2 and built.arch_first
    with pytest.raises(ValueError, match="partial_channels=2"):
        DrNas(Nb201Supernet(8, 1), NB201, cfg(k=2))


def test_paper_rows_are_expressible():
    nb201 = SearchConfig(space="nb201", method="drnas", C=16, N=5, epochs=100, nesterov=False, weight_decay=3e-4,
                         shuffle=True, arch=ArchConfig(), train_portion=0.5)
    darts = SearchConfig(space="darts", method="drnas", C=36, N=6, epochs=50, lr=0.1, lr_min=0.0, nesterov=False,
                         weight_decay=3e-4, shuffle=True, arch=ArchConfig(lr=6e-4), train_portion=0.5)
    assert paper_mismatches(nb201) == [] and paper_mismatches(darts) == []


@pytest.mark.parametrize(("options", "match"), [
    ({"reg_type": "l1"}, "reg_type"),
    ({"progressive": True, "k": 2, "k_final": 4, "stage_epochs": 2}, "k_final"),
    ({"progressive": True, "k": 4, "k_final": 2, "stage_epochs": 4}, "stage_epochs"),
    ({"progressive": True, "k": 4, "k_final": 2, "stage_epochs": 0, "epochs": 1}, "stage_epochs"),  # half of 1: 0
    ({"progressive": True, "k": 4, "k_final": 2, "stage_epochs": 2, "keep_final": 6}, "keep_final"),
    ({"progressive": True, "k": 4, "k_final": 3, "stage_epochs": 2}, "divisor"),  # refused before stage 1
])
def test_options_that_cannot_work_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        method("nb201", **options)


def test_the_first_stage_defaults_to_half_the_epochs():
    assert progressive("nb201", stage_epochs=0).stage_epochs == 2  # of 4


# ---------------------------------------------------------------- the Dirichlet
def test_draws_lie_on_the_simplex_and_masked_entries_are_exactly_zero():
    m = method("darts", k=2, include_none=False)
    with torch.no_grad():
        for alpha in m.alphas:
            alpha.normal_().mul_(3)
    mask = torch.ones(14, 8)
    mask[:, 0] = 0  # `none`, excluded
    mask[:5, 3] = 0
    m.model.set_mask("normal", mask)
    for kind, alpha in m.alpha.items():
        assert bool((concentration(alpha) > 0).all())
        theta = m.sample(kind, alpha)
        assert bool((theta >= 0).all())
        torch.testing.assert_close(theta.sum(-1), torch.ones(14), rtol=0, atol=1e-6)
        assert bool((theta[m.model.get_mask(kind) == 0] == 0).all())
    assert bool((m.forward_weights()["normal"].weights[:5, 3] == 0).all())
    assert torch.equal(renormalise(torch.ones(1, 3), torch.zeros(1, 3)), torch.zeros(1, 3))  # nothing left: zeros


def test_the_mean_of_many_draws_is_beta_over_its_sum():
    conc = concentration(torch.tensor([-0.5, 0.0, 0.4, 1.5, 3.0]))
    draws = dirichlet_rsample(conc.expand(10_000, 5), torch.Generator().manual_seed(0))
    torch.testing.assert_close(draws.mean(0), conc / conc.sum(), rtol=0, atol=1e-2)


def test_the_draw_and_its_gradient_are_torchs_dirichlet_rsample():
    conc = (torch.rand(3, 5, generator=torch.Generator().manual_seed(1)) + 0.5).requires_grad_()
    probe = torch.arange(5.0)
    torch.manual_seed(3)
    want = Dirichlet(conc).rsample()
    (want_grad,) = torch.autograd.grad((want * probe).sum(), conc)
    got = dirichlet_rsample(conc, torch.Generator().manual_seed(3))
    (got_grad,) = torch.autograd.grad((got * probe).sum(), conc)
    assert torch.equal(got, want) and torch.equal(got_grad, want_grad)
    assert want_grad.abs().sum() > 0


def test_a_loss_on_theta_reaches_alpha_and_consecutive_forwards_draw_anew():
    m = method()
    loss, _ = m.loss(*batches(1)[0])
    (grad,) = torch.autograd.grad(loss, m.alphas)
    assert grad.abs().sum() > 0
    first, second = (m.forward_weights()["cell"].weights for _ in range(2))
    assert not torch.equal(first, second)
    same = method()  # the same seed draws the same sequence, from its own generator, not the global one
    torch.manual_seed(123)
    assert torch.equal(same.forward_weights()["cell"].weights.detach(), method().forward_weights()["cell"].weights)


def test_evaluation_mixes_by_the_dirichlet_mean():
    m = method("darts", k=2)
    with torch.no_grad():
        for alpha in m.alphas:
            alpha.normal_()
    weights = m.forward_weights(training=False)
    for kind, alpha in m.alpha.items():
        beta = concentration(alpha.detach()).clone()
        beta[:, 0] = 0  # `none` is not searched on the DARTS space
        torch.testing.assert_close(weights[kind].weights.detach(), beta / beta.sum(-1, keepdim=True))
        assert torch.equal(weights[kind].weights, m.forward_weights(training=False)[kind].weights)
        assert weights[kind].k == 2 and weights[kind].edge_weights is None


def test_darts_space_searches_seven_ops_and_never_derives_none():
    m = method("darts", k=2)
    assert all(m.model.get_mask(kind)[:, 0].sum() == 0 for kind in m.kinds)
    with torch.no_grad():
        for alpha in m.alphas:
            alpha[:, 0] = 10.0  # a `none` α would win everywhere if it took part
    genotype = m.genotype()
    assert all(op != "none" for cell in (genotype.normal, genotype.reduce) for node in cell for op, _ in node)
    for kind, alpha in m.alpha.items():
        torch.testing.assert_close(m.arch_weights()[kind], masked_softmax(alpha, m.model.get_mask(kind)))


def test_partial_identity_edge_is_the_channel_permutation():
    k, c = 4, 16
    h = torch.randn(2, c, 5, 5)
    pc = PartialChannels(torch.ones(1, 1), k)
    out = pc.combine(pc.op_part(h), h, 1)  # only identity, weight 1
    assert out.shape == h.shape
    for g in range(k):
        for i in range(c // k):
            assert torch.equal(out[:, i * k + g], h[:, g * (c // k) + i])


# ---------------------------------------------------------------- anchors
def test_l2_is_adams_decay_and_kl_a_term_of_the_alpha_loss():
    l2, kl = method("darts", k=2), method("darts", k=2, reg_type="kl", reg_scale=0.5)
    assert l2.a_optimizer.param_groups[0]["weight_decay"] == 1e-3 and l2.arch_penalty() is None
    assert kl.a_optimizer.param_groups[0]["weight_decay"] == 0.0
    with torch.no_grad():
        for alpha in kl.alphas:
            alpha.zero_()
    assert kl.arch_penalty().item() == pytest.approx(0.0, abs=1e-6)  # β = 1: the anchor itself
    with torch.no_grad():
        for alpha in kl.alphas:
            alpha.normal_()
    want = sum(  # over the 7 searched ops (no `none`) of every edge of both kinds
        torch.distributions.kl_divergence(Dirichlet(concentration(a[:, 1:])), Dirichlet(torch.ones(14, 7))).sum()
        for a in kl.alphas
    )
    torch.testing.assert_close(kl.arch_penalty(), 0.5 * want)
    assert kl_to_uniform(torch.full((2, 3), 2.0)) > 0


def test_nb201_lr_follows_the_cosine_over_all_epochs():
    m = SearchConfig(space="nb201", method="drnas", arch=ArchConfig(), epochs=100)
    d = DrNas(Nb201Supernet(4, 1), NB201, m, torch.Generator().manual_seed(0))
    assert [round(d.set_epoch(e), 6) for e in (0, 50, 99)] == [0.025, 0.013, 0.001006]


def test_alpha_is_frozen_for_the_warm_up_epochs_of_each_stage():
    m = progressive("nb201", arch_warmup_epochs=1)
    data = batches(4)
    frozen = []
    for epoch in range(4):
        m.set_epoch(epoch)
        before = [a.detach().clone() for a in m.alphas]
        m.train_step(*data[0], *data[1])
        frozen.append(all(torch.equal(a.detach(), b) for a, b in zip(m.alphas, before, strict=True)))
        assert m.end_epoch(epoch + 1, None)["arch_frozen"] is frozen[-1]
    assert frozen == [True, False, True, False]


# ---------------------------------------------------------------- progressive learning
def test_prune_keeps_the_top_k_alive_entries_and_never_revives_a_masked_one():
    alpha = torch.tensor([[5.0, 1.0, 3.0, 2.0, 4.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
    mask = torch.tensor([[0.0, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    new = prune_rows(alpha, mask, 2)
    assert new.tolist() == [[0, 0, 1, 0, 1], [0, 1, 1, 0, 0]]
    assert alpha.tolist() == [[0.0, 0.0, 3.0, 0.0, 4.0], [0.0, pytest.approx(0.2), pytest.approx(0.3), 0.0, 0.0]]
    with pytest.raises(ValueError, match="cannot keep 4"):
        prune_rows(torch.zeros(2, 5), mask, 4)


def test_widening_copies_old_channels_and_chains_the_separable_units():
    m = method("darts", k=2, include_none=False)
    old = m.model
    new = DartsSupernet(4, 1, partial_channels=1)
    gen = torch.Generator().manual_seed(0)
    transforms = widening_transforms(old, new, gen)
    unit_name = "cells.0.edges.0.2.0"  # a normal cell's dua_sepc_3x3, first separable unit
    dw, pw = f"{unit_name}.1.weight", f"{unit_name}.2.weight"
    old_state = old.state_dict()
    w_dw, w_pw = transforms[dw](old_state[dw]), transforms[pw](old_state[pw])
    assert w_dw.shape == (4, 1, 3, 3) and w_pw.shape == (4, 4, 1, 1)
    assert torch.equal(w_dw[:2], old_state[dw]) and torch.equal(w_pw[:2, :2], old_state[pw])
    # The new depthwise channels copy old ones; the pointwise conv's new inputs take the same indices.
    for c in (2, 3):
        source = next(s for s in range(2) if torch.equal(w_dw[c], old_state[dw][s]))
        assert torch.equal(w_pw[:2, c], old_state[pw][:, source])
    bias = f"{unit_name}.2.bias"
    assert transforms[bias](old_state[bias]).shape == (4,)
    assert "stem.0.weight" not in transforms and "cells.0.preprocess1.1.weight" not in transforms


def test_a_stage_change_prunes_widens_and_carries_the_momentum_buffers():
    m = progressive("darts")
    data = batches(4)
    for epoch in range(2):
        m.set_epoch(epoch)
        m.train_step(*data[0], *data[1])
        record = m.end_epoch(epoch + 1, None)
    old_model = m.model
    assert record["stage"] == 0 and record["partial_channels"] == 2 and m.stage == 1 and m.k == 1
    assert old_model is not None and m.model.partial_channels == 1
    for kind in m.kinds:
        mask = m.model.get_mask(kind)
        assert mask.sum(1).tolist() == [3.0] * 14 and mask[:, 0].sum() == 0  # 3 kept, `none` never revived
        assert len(record["pruned"][kind]) == 14 * (7 - 3)
        alpha = m.alpha[kind].detach()
        assert bool((alpha[mask == 0] == 0).all())
    op = m.model.cells[0].edges[0][2][0][2]  # a pointwise conv, now at C/1 = 4 channels
    assert op.weight.shape == (4, 4, 1, 1)
    assert m.w_optimizer.param_groups[0]["params"] == list(m.model.parameters()) == m.weights
    for p in m.weights:
        buf = m.w_optimizer.state.get(p, {}).get("momentum_buffer")
        assert buf is None or buf.shape == p.shape
    assert sum(1 for p in m.weights if "momentum_buffer" in m.w_optimizer.state.get(p, {})) > 0
    m.set_epoch(2)
    loss, _ = m.train_step(*data[2], *data[3])
    assert torch.isfinite(loss)
    assert m.end_epoch(3, None)["partial_channels"] == 1


def test_a_stage_boundary_out_of_order_is_an_error():
    m = progressive("nb201")
    with pytest.raises(RuntimeError, match="stage 0 at epoch 2"):
        m.set_epoch(2)


# ---------------------------------------------------------------- resumes
def _round_trip(a: DrNas, b: DrNas) -> None:
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer, weights_only=True))


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_state_round_trip_resumes_identically_across_the_stage_boundary(space):
    data = batches(6)
    a = progressive(space, reg_type="kl")
    for epoch in range(2):
        a.set_epoch(epoch)
        a.train_step(*data[0], *data[1])
        a.end_epoch(epoch + 1, None)
    b = progressive(space, seed=1, reg_type="kl")
    _round_trip(a, b)  # a stage-1 checkpoint into a stage-0 method: it rebuilds the supernet first
    assert b.stage == 1 and b.model.partial_channels == a.model.partial_channels
    for m in (a, b):
        m.set_epoch(2)
        m.train_step(*data[2], *data[3])
        m.train_step(*data[4], *data[5])
    for pa, pb in zip([*a.alphas, *a.weights], [*b.alphas, *b.weights], strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


# ---------------------------------------------------------------- end to end
def drnas_cfg(space: str, **options):
    """The every-method test's tiny search, with K values that fit C=4 (the DARTS space's default K 6 does not)."""
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    tiny = {"C": 4, "N": 1, "epochs": 2, "batch_size": 16, "log_every": 1}
    raw["nb201"]["search"].update(tiny)
    raw["darts"]["search"].update(tiny, image_size=8, train_images=32, test_images=16)
    section = {"arch": {"lr": 0.003, "betas": [0.5, 0.999], "weight_decay": 0.001}, "train_portion": 0.5,
               "arch_warmup_epochs": 0, **options}
    raw["nb201"]["methods"], raw["nb201"]["options"] = ["drnas"], {"drnas": section}
    raw["darts"]["methods"] = ["drnas"]
    raw["darts"]["options"]["drnas"] = section
    raw["darts"]["options"]["isdarts"]["shrink"] = {"steps": 1, "interval": 1}
    raw["darts"]["sweep"]["epochs"] = 21
    params = params_from_dict(raw)
    return params.nb201.search("drnas") if space == "nb201" else params.darts.runs.search("drnas")


@pytest.mark.parametrize(("space", "options"), [
    ("darts", {"k": 2, "k_final": 1, "stage_epochs": 1}),
    ("nb201", {"progressive": True, "k": 4, "k_final": 2, "stage_epochs": 1, "reg_type": "kl"}),
])
def test_a_tiny_progressive_search_resumes_across_the_stage_boundary(arrays, tmp_path, space, options):  # noqa: F811
    config = drnas_cfg(space, **options)
    full = search(config, arrays, tmp_path / "full")
    epochs = full["history"]["epochs"]
    assert [r["partial_channels"] for r in epochs] == [options["k"], options["k_final"]]
    assert epochs[0]["pruned"] and not any(epochs[1]["pruned"].values() if space == "darts" else epochs[1]["pruned"])
    assert full["genotype"]["method"] == "drnas"
    assert search(config, arrays, tmp_path / "cut", stop_after_epochs=1) == {"finished": False, "epochs_done": 1}
    resumed = search(config, arrays, tmp_path / "cut")
    assert resumed["genotype"] == full["genotype"]
    assert strip_timing(resumed["history"]) == strip_timing(full["history"])
