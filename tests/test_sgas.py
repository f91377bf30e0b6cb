"""SGAS (FAMILY.md "3. SGAS"): the scores, the decision schedule and batch growth, the decided cell (pruned
edges, unweighted decided ops, frozen α), the forced genotype, the NB201 variant, exact resumes and a loop run."""

import io
import math

import pytest
import torch
import yaml
from method_helpers import random_batches as batches
from test_search_loop import ROOT, arrays, search  # noqa: F401 (fixture)

from isdarts.config import ArchConfig, SearchConfig, params_from_dict
from isdarts.config.paper import paper_mismatches
from isdarts.search.base import cosine_lr
from isdarts.search.sgas import (
    OPEN,
    PRUNED,
    Sgas,
    edge_scores,
    histogram_intersection,
    normalise,
    normalised_entropy,
    op_distribution,
)
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201SearchCell, Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")
SPACES = {"nb201": (NB201, Nb201Supernet), "darts": (DARTS_SPACE, DartsSupernet)}


def cfg(space: str = "nb201", epochs: int = 50, **options) -> SearchConfig:
    return SearchConfig(space=space, method="sgas", arch=ArchConfig(lr=0.01), epochs=epochs, batch_size=64,
                        options=options)


def method(space: str = "nb201", seed: int = 0, fused: bool = True, epochs: int = 50, **options) -> Sgas:
    torch.manual_seed(seed)
    model = SPACES[space][1](4, 1, fused=fused)
    return Sgas(model, SPACES[space][0], cfg(space, epochs, **options), torch.Generator().manual_seed(seed))


def spread_alpha(m: Sgas, seed: int = 3, none_boost: float = 0.0) -> None:
    """α far from uniform (so scores differ), `none` raised by `none_boost` on every row."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in m.alphas:
            a.copy_(2 * torch.randn(a.shape, generator=gen, dtype=a.dtype))
            a[:, m.none] += none_boost


# ---------------------------------------------------------------- the scores
def test_uniform_p_has_entropy_1_identical_histograms_intersect_at_1_and_n_maps_to_0_1():
    p = torch.full((3, 7), 1 / 7, dtype=torch.float64)
    torch.testing.assert_close(normalised_entropy(p), torch.ones(3, dtype=torch.float64))
    one_hot = torch.zeros(2, 7, dtype=torch.float64)
    one_hot[:, 2] = 1
    assert normalised_entropy(one_hot).tolist() == [0.0, 0.0]
    q = torch.softmax(torch.randn(4, 7, dtype=torch.float64), -1)
    torch.testing.assert_close(histogram_intersection([q, q.clone()], q), torch.ones(4, dtype=torch.float64))
    assert histogram_intersection([], q).tolist() == [0.0] * 4
    v = torch.tensor([3.0, -1.0, 2.0, 7.0])
    n = normalise(v)
    assert n.min().item() == 0.0 and n.max().item() == 1.0 and n.tolist() == pytest.approx([0.5, 0, 0.375, 1])
    assert normalise(torch.full((5,), 2.5)).tolist() == [0.0] * 5


def test_importance_and_p_leave_none_out_and_the_criteria_multiply_the_normalised_terms():
    probs = torch.softmax(torch.randn(6, 5, dtype=torch.float64), -1)
    importance, p = op_distribution(probs, none=0)
    torch.testing.assert_close(importance, 1 - probs[:, 0])
    torch.testing.assert_close(p, probs[:, 1:] / (1 - probs[:, :1]))
    certainty = 1 - (-(p * p.log()).sum(1) / math.log(4))
    score1, _ = edge_scores(probs, 0, [], use_history=False)
    torch.testing.assert_close(score1, normalise(importance) * normalise(certainty))
    history = [torch.softmax(torch.randn(6, 4, dtype=torch.float64), -1) for _ in range(3)]
    hist = torch.stack([torch.minimum(h, p).sum(1) for h in history]).mean(0)
    score2, _ = edge_scores(probs, 0, history, use_history=True)
    torch.testing.assert_close(score2, normalise(importance) * normalise(certainty) * normalise(hist))


def test_scores_are_normalised_over_all_edges_before_the_candidates_are_picked():
    # Edge 0 is decided. Normalised over all three edges, edge 2 wins; over the candidates 1 and 2 alone both
    # would score 0 and edge 1 (the first) would be picked.
    alpha = torch.tensor([[1.0, 0, -3, -1, -2], [-1, 3, 0, 1, 2], [-1, -3, -2, 2, -1]], dtype=torch.float64)
    probs = torch.softmax(alpha, -1)
    score, _ = edge_scores(probs, 0, [], use_history=False)
    imp, p = op_distribution(probs[1:], 0)
    assert (normalise(imp) * normalise(1 - normalised_entropy(p))).tolist() == [0.0, 0.0]
    m = method()
    m.state["cell"][:3] = [1, OPEN, OPEN]
    m.state["cell"][3:] = [PRUNED] * 3  # (not an NB201 state; only edges 1 and 2 are candidates here)
    full = torch.zeros(6, 5, dtype=torch.float64)
    full[:3] = probs
    assert m.decide("cell", full, torch.cat([score, torch.zeros(3, dtype=torch.float64)])) == (2, 3)


# ---------------------------------------------------------------- the schedule
@pytest.mark.parametrize(("space", "epochs", "decisions"), [("darts", 50, 8), ("nb201", 40, 6)])
def test_decisions_come_at_warmup_plus_interval_multiples_and_the_batch_grows_by_8(space, epochs, decisions):
    assert 9 + 5 * (decisions - 1) + 5 + 1 == epochs  # the official epoch formula
    m = method(space, epochs=epochs)
    spread_alpha(m, none_boost=1.0)  # `none` often the largest entry: never chosen all the same
    assert m.decisions == decisions and m.train_batch_size == 64
    decided_at, sizes = [], []
    for done in range(1, epochs + 1):
        record = m.end_epoch(done, None)
        picks = [p for p in m.space.per_kind(record["decision"]).values() if p is not None]
        if picks:
            decided_at.append(done - 1)
            assert len(picks) == len(m.kinds)  # every kind decides on a decision epoch
            assert all(op != "none" for _, op in picks)
        sizes.append(record["next_batch_size"])
    assert decided_at == [9 + 5 * k for k in range(decisions)]
    assert sorted(set(sizes)) == [64 + 8 * k for k in range(decisions + 1)]
    assert m.train_batch_size == 64 + 8 * decisions == (128 if space == "darts" else 112)
    for kind in m.kinds:
        state = m.state[kind]
        assert OPEN not in state and all(s != m.none for s in state if s >= 0)
        mask = m.model.get_mask(kind)
        for e, s in enumerate(state):
            want = torch.zeros(m.space.num_ops)
            if s >= 0:
                want[s] = 1
            assert torch.equal(mask[e].cpu(), want)
        for group in m.groups:  # every DARTS node keeps exactly 2 decided inputs, the rest pruned
            assert sum(state[e] >= 0 for e in group) == min(2 if space == "darts" else 1, len(group))
    genotype = m.genotype()
    assert genotype == m.space.genotype_from_masks(m.space.masks(m.model))


def test_criterion_2_history_is_appended_after_scoring_and_keeps_the_last_epochs():
    m = method("nb201", criterion=2, history_size=2, warmup_epochs=100)
    seen = []
    for done in range(1, 5):
        spread_alpha(m, seed=done)
        probs = torch.softmax(m.alphas[0].detach().double(), -1)
        want, p = edge_scores(probs, m.none, m.history["cell"], use_history=True)
        record = m.end_epoch(done, None)
        assert record["edge_score"] == pytest.approx(want.tolist(), abs=0)
        seen.append(p)
        assert len(m.history["cell"]) == min(done, 2)
        for h, s in zip(m.history["cell"], seen[-2:], strict=True):
            torch.testing.assert_close(h, s, rtol=0, atol=0)


def test_nb201_allow_none_lets_an_edge_take_none():
    for allow, none_chosen in ((False, False), (True, True)):
        m = method("nb201", warmup_epochs=0, decision_interval=1, allow_none=allow)
        spread_alpha(m, none_boost=20.0)  # `none` the argmax of every edge
        for done in range(1, 7):
            m.end_epoch(done, None)
        assert all(s >= 0 for s in m.state["cell"])
        assert all((s == m.none) == none_chosen for s in m.state["cell"])
        assert str(m.genotype()).count("none") == (6 if none_chosen else 0)


def test_options_errors_and_the_darts_paper_row():
    options = cfg("darts").options
    assert {k: options[k] for k in ("criterion", "warmup_epochs", "decision_interval", "history_size",
                                     "batch_increase", "allow_none", "step_order", "lr_epoch_offset")} == {
        "criterion": 2, "warmup_epochs": 9, "decision_interval": 5, "history_size": 4, "batch_increase": 8,
        "allow_none": False, "step_order": "alpha_first", "lr_epoch_offset": 0}
    assert method().arch_first and method().clip_alpha is False
    for bad in ({"criterion": 3}, {"decision_interval": 0}, {"history_size": 0}, {"lr_epoch_offset": 2}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            method(**bad)
    for criterion in (1, 2):
        paper = SearchConfig(space="darts", method="sgas", C=16, N=2, epochs=50, batch_size=64, nesterov=False,
                             weight_decay=3e-4, shuffle=True, arch=ArchConfig(), train_portion=0.5,
                             options={"criterion": criterion})
        assert paper_mismatches(paper) == []


def test_lr_follows_the_cosine_over_all_epochs_with_an_optional_one_epoch_offset():
    assert method(epochs=50).set_epoch(3) == cosine_lr(3, 50, 0.025, 0.001)
    assert method(epochs=50, lr_epoch_offset=1).set_epoch(3) == cosine_lr(4, 50, 0.025, 0.001)


# ---------------------------------------------------------------- the decided cell
def decide_all(m: Sgas) -> None:
    """Run decisions every epoch until every kind is fully decided."""
    spread_alpha(m)
    done = 0
    while any(s == OPEN for kind in m.kinds for s in m.state[kind]):
        done += 1
        m.end_epoch(done, None)


def test_a_decided_nb201_cell_is_the_discrete_cell_exactly():
    m = method("nb201", fused=False, warmup_epochs=0, decision_interval=1)
    decide_all(m)
    weights = m.arch_weights()["cell"]
    ops = m.state["cell"]
    assert all(weights[e, o].item() == 1.0 for e, o in enumerate(ops))
    cell = next(layer for layer in m.model.layers if isinstance(layer, Nb201SearchCell))
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        out = cell(x, m.model.alive["cell"], weights, None, ("cell", 0))
        edge = {name: e for e, name in enumerate(m.space.edges)}
        nodes = [x]
        for i in (1, 2, 3):
            total = None
            for j in range(i):
                e = edge[f"{i}<-{j}"]
                term = cell.edges[e][ops[e]](nodes[j]) if m.space.ops[ops[e]] != "none" else None
                total = term if total is None else (total if term is None else total + term)
            nodes.append(torch.zeros_like(x) if total is None else total)
    assert torch.equal(out, nodes[3])


def test_a_decided_darts_cell_sums_its_two_decided_ops_unweighted_and_runs_no_pruned_op():
    m = method("darts", fused=False, warmup_epochs=0, decision_interval=1)
    decide_all(m)
    cell = m.model.cells[0]
    assert cell.kind == "normal"
    ran = []
    for e, ops in enumerate(cell.edges):
        for o, op in enumerate(ops):
            op.register_forward_hook(lambda *_, e=e, o=o: ran.append((e, o)))
    s0, s1 = torch.randn(2, 12, 8, 8), torch.randn(2, 12, 8, 8)
    ops = m.state["normal"]
    with torch.no_grad():
        out = cell(s0, s1, m.model.alive["normal"], m.arch_weights()["normal"], None, 0)
        states = [cell.preprocess0(s0), cell.preprocess1(s1)]
        edge = {name: e for e, name in enumerate(m.space.edges)}
        for i in range(4):
            terms = [cell.edges[edge[f"{i}<-{j}"]][ops[edge[f"{i}<-{j}"]]](states[j])
                     for j in range(2 + i) if ops[edge[f"{i}<-{j}"]] >= 0]
            assert len(terms) == 2
            states.append(terms[0] + terms[1])
    assert torch.equal(out, torch.cat(states[2:], dim=1))
    assert set(ran) == {(e, o) for e, o in enumerate(ops) if o >= 0}  # pruned edges never computed


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_decided_and_pruned_alpha_rows_stay_bit_identical_while_the_rest_train(space):
    m = method(space, warmup_epochs=0, decision_interval=1)
    spread_alpha(m)
    m.end_epoch(1, None)
    m.end_epoch(2, None)
    frozen = {kind: [e for e, s in enumerate(m.state[kind]) if s != OPEN] for kind in m.kinds}
    if space == "darts":  # force a full node too, so pruned rows are covered
        m.state["normal"][2:5] = [4, 5, PRUNED]
        m._apply_masks()
        frozen["normal"] = sorted(set(frozen["normal"]) | {2, 3, 4})
    before = [a.detach().clone() for a in m.alphas]
    data = batches(4)
    m.set_epoch(2)
    m.train_step(*data[0], *data[1])
    m.train_step(*data[2], *data[3])
    for kind, a, a0 in zip(m.kinds, m.alphas, before, strict=True):
        for e in range(m.space.num_edges):
            same = torch.equal(a[e].detach(), a0[e])
            assert same == (e in frozen[kind]), (kind, e)


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_the_genotype_before_the_last_decision_is_the_forced_parse(space):
    m = method(space, warmup_epochs=0, decision_interval=1)
    spread_alpha(m, seed=4)
    for done in (0, 1):
        if done:
            m.end_epoch(done, None)
        masks = {}
        for kind, alpha in zip(m.kinds, m.alphas, strict=True):
            probs = torch.softmax(alpha.detach().double(), -1)
            importance = 1 - probs[:, m.none]
            mask = torch.zeros(m.space.num_edges, m.space.num_ops)
            for group in m.groups:
                decided = [e for e in group if m.state[kind][e] >= 0]
                rest = sorted((e for e in group if m.state[kind][e] == OPEN), key=lambda e: -importance[e].item())
                for e in decided:
                    mask[e, m.state[kind][e]] = 1
                for e in rest[: min(m.space.keep, len(group)) - len(decided)]:
                    usable = probs[e].clone()
                    usable[m.none] = -1
                    mask[e, int(usable.argmax())] = 1
            masks[kind] = mask
        assert m.genotype() == m.space.genotype_from_masks(masks)
        assert sum(s >= 0 for kind in m.kinds for s in m.state[kind]) == done * len(m.kinds)


# ---------------------------------------------------------------- resumes
@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_state_round_trip_resumes_identically(space):
    data = batches(6)
    options = {"warmup_epochs": 0, "decision_interval": 1, "criterion": 2}
    a = method(space, **options)
    a.set_epoch(0)
    a.train_step(*data[0], *data[1])
    a.end_epoch(1, None)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = method(space, seed=1, **options)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    records = []
    for m in (a, b):
        m.set_epoch(1)
        m.train_step(*data[2], *data[3])
        records.append(m.end_epoch(2, None))
        m.train_step(*data[4], *data[5])
    assert records[0] == records[1] and a.state == b.state and a.train_batch_size == b.train_batch_size == 80
    for pa, pb in zip([*a.alphas, *a.weights], [*b.alphas, *b.weights], strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    for kind in a.kinds:
        assert torch.equal(a.model.get_mask(kind), b.model.get_mask(kind))
        assert all(torch.equal(x, y) for x, y in zip(a.history[kind], b.history[kind], strict=True))


# ---------------------------------------------------------------- the loop
def test_the_loop_trains_each_epoch_at_the_grown_batch_size(arrays, tmp_path):  # noqa: F811
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    raw["nb201"]["search"].update(C=4, N=1, epochs=3, batch_size=16, log_every=1)
    raw["nb201"]["methods"] = ["sgas"]
    raw["nb201"]["options"] = {"sgas": {"arch": {"lr": 0.003, "betas": [0.5, 0.999], "weight_decay": 0.001},
                                        "train_portion": 0.5, "warmup_epochs": 0, "decision_interval": 1}}
    config = params_from_dict(raw).nb201.search("sgas")
    epochs = search(config, arrays, tmp_path / "run")["history"]["epochs"]
    # 32 weight images: batches of 16, 24 and 32 give 2, 2 and 1 steps.
    assert [r["weight_steps"] for r in epochs] == [2, 4, 3]
    assert [r["next_batch_size"] for r in epochs] == [24, 32, 40]
    assert [sum(map(sum, r["alive"])) for r in epochs] == [26, 22, 18]
