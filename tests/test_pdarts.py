"""P-DARTS (FAMILY.md "4. P-DARTS"): the skip dropout (rates, stride-1 skips only, fused == unfused, absent
unless asked), the stages (depth, α widths, switches 8 -> 5 -> 3 -> 1, fresh weights, α and optimisers, the
restarted cosine), the final cell (2 inputs per node, no `none`, the normal cell's skip cap), the α step
(warm-up, gradient clip), option errors and a tiny search resumed at and between stage boundaries."""

import math

import pytest
import torch
import yaml
from test_search_loop import ROOT, arrays, search, strip_timing  # noqa: F401 (fixture)

from isdarts.config import params_from_dict
from isdarts.config.paper import paper_mismatches
from isdarts.search.base import cosine_lr
from isdarts.search.loop import build_method
from isdarts.search.pdarts import PDarts, final_mask, skip_drop_rate
from isdarts.spaces.common import SkipDropout
from isdarts.spaces.darts.genotype import DartsGenotype
from isdarts.spaces.darts.ops import DARTS_SEARCH_OPS
from isdarts.spaces.darts.space import SPACE
from isdarts.spaces.darts.supernet import DARTS_EDGES, DartsSupernet

pytestmark = pytest.mark.usefixtures("one_thread")
NONE, SKIP = DARTS_SEARCH_OPS.index("none"), DARTS_SEARCH_OPS.index("skip_connect")
SEP3 = DARTS_SEARCH_OPS.index("dua_sepc_3x3")
ARCH = {"arch": {"lr": 0.003, "betas": [0.5, 0.999], "weight_decay": 0.001}, "train_portion": 0.5}


def tiny_cfg(**options):
    """P-DARTS on a C=4, N=1 supernet and 8x8 images: 3 stages of 2 epochs (1 weights-only) unless overridden."""
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    stage_epochs = options.get("stage_epochs", 2)
    raw["darts"]["search"].update(C=4, N=1, epochs=3 * stage_epochs, batch_size=16, log_every=1, image_size=8,
                                  train_images=32, test_images=16, channels_last=False)
    raw["darts"]["sweep"]["epochs"] = 21
    for other in raw["darts"]["options"].values():  # every section is validated: each must fit the epochs
        if isinstance(other, dict) and "shrink" in other:
            other["shrink"] = {"steps": 1, "interval": 1}
    raw["darts"]["options"]["pdarts"] = {**ARCH, "stage_epochs": stage_epochs, "warmup_epochs": 1, **options}
    raw["darts"]["methods"] = ["pdarts"]
    return params_from_dict(raw).darts.runs.search("pdarts")


def tiny_method(**options) -> PDarts:
    torch.manual_seed(0)
    return build_method(tiny_cfg(**options), 10, torch.device("cpu"), torch.Generator().manual_seed(0))


def batch(n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def alive_per_edge(model, kind):
    return model.get_mask(kind).sum(1).int().tolist()


# ---------------------------------------------------------------- skip dropout
def test_skip_drop_rate_follows_the_official_schedule():
    rates = [skip_drop_rate(0.4, e, 25, 10) for e in (0, 9, 10, 15, 24)]
    assert rates == pytest.approx([0.384, 0.24, 0.4, 0.4 * math.exp(-1), 0.4 * math.exp(-2.8)], rel=1e-12)
    assert [round(r, 4) for r in rates] == [0.384, 0.24, 0.4, 0.1472, 0.0243]


def test_skip_dropout_drops_at_the_rate_with_one_mask_per_edge():
    torch.manual_seed(0)
    like = torch.ones(4, 8, 16, 16)
    hook = SkipDropout([(3, SKIP), (5, SKIP)], like, torch.tensor(0.25))
    out3, out5 = hook(3, SKIP, like), hook(5, SKIP, like)
    for out in (out3, out5):
        assert out.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
        assert (out == 0).float().mean().item() == pytest.approx(0.25, abs=0.02)
    assert not torch.equal(out3, out5)
    assert hook(4, SKIP, like) is like and hook(3, SEP3, like) is like  # other edges and ops pass untouched


def twins():
    torch.manual_seed(0)
    fused, unfused = DartsSupernet(4, 1, fused=True), DartsSupernet(4, 1, fused=False)
    unfused.load_state_dict(fused.state_dict())
    return fused, unfused


def run(model, x, y, weights, seed=1):
    model.zero_grad()
    torch.manual_seed(seed)
    logits = model(x, weights)[1]
    torch.nn.functional.cross_entropy(logits, y).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_a_supernet_never_asked_has_no_dropout_and_asking_keeps_its_state_dict_keys():
    model = DartsSupernet(4, 1)
    assert "skip_drop_rate" not in dict(model.named_buffers())
    keys = set(model.state_dict())
    model.set_skip_dropout(0.3)
    assert set(model.state_dict()) == keys and model.skip_drop_rate.item() == pytest.approx(0.3)
    with pytest.raises(ValueError, match="skip dropout rate"):
        model.set_skip_dropout(1.0)


def test_fused_and_unfused_drop_the_same_entries_and_eval_mode_drops_nothing():
    fused, unfused = twins()
    x, y = batch()
    gen = torch.Generator().manual_seed(2)
    weights = {k: torch.randn(14, 8, generator=gen).softmax(-1) for k in ("normal", "reduce")}
    plain, _ = run(fused, x, y, weights)
    for model in (fused, unfused):
        model.set_skip_dropout(0.5)
    (lf, gf), (lu, gu) = run(fused, x, y, weights), run(unfused, x, y, weights)
    assert not torch.allclose(lf, plain)  # dropout acts in training mode
    torch.testing.assert_close(lf, lu, rtol=1e-4, atol=2e-5)
    assert gf.keys() == gu.keys()
    for name in gf:
        torch.testing.assert_close(gf[name], gu[name], rtol=1e-4, atol=2e-5)
    fused.eval()
    with torch.no_grad():
        dropped = fused(x, weights)[1]
        fused.set_skip_dropout(0.0)
        torch.testing.assert_close(dropped, fused(x, weights)[1], rtol=0, atol=0)


@pytest.mark.parametrize("fused", [True, False])
def test_only_live_stride_one_skips_are_dropped(fused):
    """No live stride-1 skip (the reduce cells keep their stride-2 FactorizedReduce skips): the dropout changes
    nothing and draws no random number."""
    torch.manual_seed(0)
    model = DartsSupernet(4, 1, fused=fused)
    normal = torch.ones(14, 8)
    normal[:, SKIP] = 0
    reduce = torch.ones(14, 8)
    stride1 = [e for e, key in enumerate(DARTS_EDGES) if int(key.split("<-")[1]) >= 2]
    reduce[stride1, SKIP] = 0
    model.set_mask("normal", normal)
    model.set_mask("reduce", reduce)
    x, y = batch()
    weights = {k: torch.full((14, 8), 0.125) for k in ("normal", "reduce")}
    plain, _ = run(model, x, y, weights)
    model.set_skip_dropout(0.9)
    torch.manual_seed(1)
    dropped = model(x, weights)[1]
    after = torch.get_rng_state()
    torch.manual_seed(1)
    assert torch.equal(after, torch.get_rng_state())
    torch.testing.assert_close(dropped.detach(), plain, rtol=0, atol=0)


# ---------------------------------------------------------------- stages
def test_stages_grow_the_supernet_and_switch_ops_off_8_5_3_1():
    m = tiny_method()
    cells, widths, alive = [], [], []
    for epoch in range(6):
        m.set_epoch(epoch)
        record = m.end_epoch(epoch + 1, None)
        cells.append(len(m.model.cells))
        widths.append(tuple(a.shape[1] for a in m.alphas))
        assert record["stage"] == epoch // 2
        assert record["shrink_step"] == (epoch // 2 if epoch % 2 else None)
        alive.append({kind: alive_per_edge(m.model, kind) for kind in m.kinds})
    assert cells == [5, 5, 11, 11, 17, 17]
    assert widths == [(8, 8), (8, 8), (5, 5), (5, 5), (3, 3), (3, 3)]
    # After each stage's last epoch: 5, then 3 ops on every edge, then the final cell (1 op on 2 edges per node).
    for kind in m.kinds:
        assert alive[1][kind] == [5] * 14 and alive[3][kind] == [3] * 14
        assert sorted(alive[5][kind]) == [0] * 6 + [1] * 8
    genotype = m.genotype()
    assert genotype == SPACE.genotype_from_masks(SPACE.masks(m.model))
    assert isinstance(genotype, DartsGenotype)


def test_each_stage_starts_a_fresh_supernet_alpha_and_optimisers_and_restarts_the_cosine():
    m = tiny_method(lr_epoch_offset=1, lr_min=0.0, add_cells=3)
    lrs = []
    for epoch in range(2):
        lrs.append(m.set_epoch(epoch))
        x, y = batch(seed=epoch)
        m.train_step(x, y, x, y)
        m.end_epoch(epoch + 1, None)
    old_model, old_alphas = m.model, [a.detach().clone() for a in m.alphas]
    assert m.w_optimizer.state and m.a_optimizer.state
    rng = torch.get_rng_state()
    lrs.append(m.set_epoch(2))
    assert m.model is not old_model and m.stage == 1
    # The new weights are a fresh initialisation, drawn as a plain build of the deeper supernet draws them.
    torch.set_rng_state(rng)
    fresh = SPACE.build_supernet(4, 2, 10, fused=True)
    expected = fresh.state_dict()
    for name, value in m.model.state_dict().items():
        if not name.endswith("_mask"):
            assert torch.equal(value, expected[name]), name
    assert not m.w_optimizer.state and not m.a_optimizer.state
    assert m.w_optimizer.param_groups[0]["params"] == list(m.model.parameters())
    assert all(a.shape == (14, 5) and a.abs().max() < 0.01 for a in m.alphas)
    assert all(o.shape != a.shape for o, a in zip(old_alphas, m.alphas, strict=True))
    lrs.append(m.set_epoch(3))
    # lr_epoch_offset 1: epoch e of a stage trains at the cosine's e+1, reaching 0 on the stage's last epoch.
    assert lrs == [0.0125, 0.0, 0.0125, 0.0]
    # The default (0): the lr resets to 0.025 at each stage's first epoch, and the cosine ends at lr_min = 0.
    m0 = tiny_method(lr_min=0.0, add_cells=3)
    starts = []
    for epoch in range(6):
        lr = m0.set_epoch(epoch)
        if epoch % 2 == 0:
            starts.append(lr)
        m0.end_epoch(epoch + 1, None)
    assert starts == [0.025] * 3 and cosine_lr(2, 2, 0.025, 0.0) == 0.0


def test_stage_dropout_rate_is_set_each_epoch_and_absent_for_a_zero_base_rate():
    m = tiny_method(drop_rate_0=0.0, drop_rate_1=0.4, stage_epochs=3, warmup_epochs=1)
    for epoch in range(3):
        m.set_epoch(epoch)
        assert "skip_drop_rate" not in dict(m.model.named_buffers())
        m.end_epoch(epoch + 1, None)
    for epoch, want in ((3, 0.4 * 2 / 3), (4, 0.4), (5, 0.4 * math.exp(-0.2))):
        m.set_epoch(epoch)
        assert m.model.skip_drop_rate.item() == pytest.approx(want, rel=1e-6)


def test_alpha_steps_only_after_the_warm_up_with_a_clipped_gradient():
    m = tiny_method(arch_grad_clip=1e-4)
    x, y = batch()
    m.set_epoch(0)
    before = [a.detach().clone() for a in m.alphas]
    m.train_step(x, y, x, y)
    assert all(torch.equal(a, b) for a, b in zip(m.alphas, before, strict=True))
    m.set_epoch(1)
    grads = m.arch_grads(x, y, x, y)
    assert torch.cat([g.flatten() for g in grads]).norm() == pytest.approx(1e-4, rel=1e-2)
    m.train_step(x, y, x, y)
    assert not all(torch.equal(a, b) for a, b in zip(m.alphas, before, strict=True))


# ---------------------------------------------------------------- switch-off and the final cell
def set_alpha(m: PDarts, kind: str, rows):
    with torch.no_grad():
        m.alpha[kind].copy_(torch.tensor(rows, dtype=torch.float32))


def test_stage_one_keeps_a_strong_none_and_the_last_stage_drops_none_first():
    m = tiny_method(add_cells=3)
    m.set_epoch(0)
    favour_none = [[5.0 if o == NONE else 0.1 * o for o in range(8)] for _ in range(14)]
    for kind in m.kinds:
        set_alpha(m, kind, favour_none)
    m.set_epoch(1)
    record = m.end_epoch(2, None)
    # The 3 lowest of [5, .1, .2, ..., .7] are skip (.1), sep3 (.2), sep5 (.3): none survives.
    assert alive_per_edge(m.model, "normal") == [5] * 14
    assert m.model.get_mask("normal")[:, NONE].sum() == 14
    assert sorted(op for _, op in record["pruned"]["normal"][:3]) == sorted(DARTS_SEARCH_OPS[1:4])
    m.set_epoch(2)
    for kind in m.kinds:
        set_alpha(m, kind, [[5.0 if o == NONE else 0.01 * o for o in row] for row in m.stage_ops[kind].tolist()])
    m.set_epoch(3)
    m.end_epoch(4, None)
    m.set_epoch(4)
    assert all(NONE in ops for ops in m.stage_ops["normal"].tolist())  # none ranked high twice
    for kind in m.kinds:
        set_alpha(m, kind, [[9.0, 1.0, 0.0]] * 14)  # none first by far
    m.set_epoch(5)
    m.end_epoch(6, None)
    final = m.model.get_mask("normal")
    assert final[:, NONE].sum() == 0 and final.sum() == 8
    genotype = m.genotype()
    for cell in (genotype.normal, genotype.reduce):
        assert all(len(node) == 2 and all(op != "none" for op, _ in node) for node in cell)


def normal_skips(genotype):
    return sum(op == "skip_connect" for node in genotype.normal for op, _ in node)


@pytest.mark.parametrize("max_skip", [0, 2, 8])
def test_the_final_normal_cell_keeps_at_most_max_skip_skips(max_skip):
    """Skip strongest on every edge (distinct strengths): 8 skips uncapped; the reduce cell is never capped."""
    m = tiny_method(max_skip_normal=max_skip)
    m.set_epoch(0)
    gen = torch.Generator().manual_seed(5)
    rows = [[3.0 + torch.rand((), generator=gen).item() if o == SKIP else 0.1 * o for o in range(8)]
            for _ in range(14)]
    for kind in m.kinds:
        set_alpha(m, kind, rows)
    genotype = m.genotype()
    assert normal_skips(genotype) == min(max_skip, 8)
    assert sum(op == "skip_connect" for node in genotype.reduce for op, _ in node) == 8
    for cell in (genotype.normal, genotype.reduce):
        assert all(len(node) == 2 and all(op != "none" for op, _ in node) for node in cell)


def test_final_mask_by_hand():
    """Node 0 (edges 0, 1), node 1 (edges 2-4): ops per edge (none, skip, sep3)."""
    ops = [[NONE, SKIP, SEP3]] * 5
    probs = [
        [0.90, 0.06, 0.04],  # none strongest: skip chosen (0.06)
        [0.10, 0.30, 0.60],  # sep3 (0.6)
        [0.10, 0.50, 0.40],  # skip (0.5)
        [0.20, 0.45, 0.35],  # skip (0.45)
        [0.50, 0.10, 0.40],  # sep3 (0.4)
    ]
    nodes = [[0, 1], [2, 3, 4]]
    mask = final_mask(probs, ops, nodes, 8, NONE, SKIP)
    chosen = {e: row.nonzero().flatten().tolist() for e, row in enumerate(mask)}
    assert chosen == {0: [SKIP], 1: [SEP3], 2: [SKIP], 3: [SKIP], 4: []}
    # Cap 1: the weakest kept skip (edge 0, 0.06) goes; edge 0 takes sep3 (0.04), then edge 3's skip (0.45)
    # goes: edge 3 falls to sep3 (0.35) below edge 4 (0.4), which comes in with sep3.
    capped = final_mask(probs, ops, nodes, 8, NONE, SKIP, max_skip=1)
    chosen = {e: row.nonzero().flatten().tolist() for e, row in enumerate(capped)}
    assert chosen == {0: [SEP3], 1: [SEP3], 2: [SKIP], 3: [], 4: [SEP3]}


# ---------------------------------------------------------------- options and a whole search
@pytest.mark.parametrize(("options", "match"), [
    ({"stage_epochs": 2, "epochs": 5}, "must be 6"),
    ({"warmup_epochs": 3}, "warmup_epochs"),
    ({"ops_keep_1": 2}, "ops_keep_1 >= 3"),
    ({"add_cells": 4}, "multiple of 3"),
    ({"drop_rate_2": 1.0}, r"\[0, 1\)"),
])
def test_options_that_cannot_work_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        tiny_method(**options)


def test_paper_settings_are_the_official_ones():
    cfg = tiny_cfg()
    diffs = paper_mismatches(cfg)
    assert any(d.startswith("batch_size=16") for d in diffs) and any(d.startswith("epochs=6") for d in diffs)
    assert not any(d.split("=")[0] in ("ops_keep_0", "ops_keep_1", "max_skip_normal", "drop_rate_1") for d in diffs)


def test_a_search_resumed_at_stage_boundaries_matches_an_uninterrupted_one(arrays, tmp_path):  # noqa: F811
    """One-epoch stages, stopped after stage 1 (its switch-off saved, stage 2's supernet not yet built) and after
    stage 2 (its supernet rebuilt before loading), then finished: the same history and genotype."""
    cfg = tiny_cfg(add_cells=3, stage_epochs=1, warmup_epochs=0)  # 5 / 8 / 11 cells: the same stages, cheaper
    full = search(cfg, arrays, tmp_path / "full")
    epochs = full["history"]["epochs"]
    assert [r["shrink_step"] for r in epochs] == [0, 1, 2]
    assert all(r["arch_loss"] is not None for r in epochs)
    assert all(len(r["alpha"]["normal"]) == 14 and len(r["alpha"]["normal"][0]) == 8 for r in epochs)
    assert sum(v is None for v in epochs[1]["alpha"]["normal"][0]) == 3  # stage 2: 5 of 8 ops have α
    assert [sum(map(sum, r["alive"]["normal"])) for r in epochs] == [70, 42, 8]
    for stop in (1, 2):
        assert search(cfg, arrays, tmp_path / "cut", stop_after_epochs=stop) == {"finished": False,
                                                                                "epochs_done": stop}
    resumed = search(cfg, arrays, tmp_path / "cut")
    assert resumed["genotype"] == full["genotype"]
    assert strip_timing(resumed["history"]) == strip_timing(full["history"])
