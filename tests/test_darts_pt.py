"""DARTS-PT (FAMILY.md "5. DARTS-PT"): the epoch split and lr phases, the projection events, op and topology
projection (which op and edge win, no renormalisation, the final cell), the measurement on the valid half, frozen
α, the blank variant, exact resumes and a loop run."""

import io

import pytest
import torch
import yaml
from method_helpers import random_batches as batches
from test_search_loop import ROOT, arrays, search  # noqa: F401 (fixture)

from isdarts.config import ArchConfig, SearchConfig, params_from_dict
from isdarts.config.paper import paper_mismatches
from isdarts.data.device_loader import DeviceImages
from isdarts.search.base import cosine_lr
from isdarts.search.darts import masked_softmax
from isdarts.search.darts_pt import DartsPt, event_epochs
from isdarts.search.speed import FastForward, SpeedPlan
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")
SPACES = {"nb201": (NB201, Nb201Supernet), "darts": (DARTS_SPACE, DartsSupernet)}
EPOCHS = {"nb201": 125, "darts": 131}


def cfg(space: str = "nb201", epochs: int | None = None, **options) -> SearchConfig:
    return SearchConfig(space=space, method="darts_pt", arch=ArchConfig(lr=0.01), epochs=epochs or EPOCHS[space],
                        batch_size=8, options=options)


def valid_images(n: int = 24, seed: int = 9) -> DeviceImages:
    gen = torch.Generator().manual_seed(seed)
    return DeviceImages(torch.randint(0, 256, (n, 3, 8, 8), generator=gen, dtype=torch.uint8),
                        torch.randint(0, 10, (n,), generator=gen), "cpu")


def method(space: str = "nb201", seed: int = 0, epochs: int | None = None, data_seed: int = 11, **options) -> DartsPt:
    torch.manual_seed(seed)
    m = DartsPt(SPACES[space][1](4, 1), SPACES[space][0], cfg(space, epochs, **options),
                torch.Generator().manual_seed(seed))
    m.attach_data(valid_images(), torch.Generator().manual_seed(data_seed))
    return m


def spread_alpha(m: DartsPt, seed: int = 3) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in m.alphas:
            a.copy_(torch.randn(a.shape, generator=gen, dtype=a.dtype))


def signal_measure(m: DartsPt, signal: dict[str, torch.Tensor]):
    """A stand-in measurement: accuracy = Σ w·signal (in 1e-6 units), loss its negative."""
    def measure(weights):
        total = sum(float((weights[kind].detach().double() * signal[kind]).sum()) for kind in m.kinds)
        return round(1e6 * total), -total
    return measure


# ---------------------------------------------------------------- the schedule
@pytest.mark.parametrize(("space", "tune", "events", "projections"), [
    ("nb201", 25, [0, 5, 10, 15, 20, 24], 6),
    ("darts", 81, list(range(0, 81, 5)), 14 + 3),
])
def test_the_paper_tuning_epochs_hold_exactly_one_event_per_projection(space, tune, events, projections):
    m = method(space)
    assert m.tune_epochs == tune and m.supernet_epochs == EPOCHS[space] - tune
    assert m.events == event_epochs(tune, 5) == events
    assert len(events) == m.space.num_edges + len(m.topology_groups) == projections


def test_epochs_must_hold_a_supernet_epoch_plus_the_tuning_epochs():
    with pytest.raises(ValueError, match="epochs = 25 must hold at least one supernet epoch plus tune_epochs = 25"):
        method("nb201", epochs=25)
    assert method("nb201", epochs=26).supernet_epochs == 1
    with pytest.raises(ValueError, match="proj_interval"):
        method(proj_interval=0)


def test_lr_is_a_cosine_over_the_supernet_epochs_then_a_tenth_and_tuning_restarts_the_momentum():
    m = method("nb201", epochs=8, tune_epochs=3, proj_interval=5)
    assert [m.set_epoch(e) for e in range(5)] == [cosine_lr(e, 5, 0.025, 0.001) for e in range(5)]
    assert [m.set_epoch(e) for e in (5, 6, 7)] == [0.0025] * 3
    data = batches(2)
    m.train_step(*data[0], *data[1])
    assert m.w_optimizer.state
    record = m.end_epoch(4, None)
    assert m.w_optimizer.state and record["projection"] is None and record["phase"] == "supernet"
    record = m.end_epoch(5, None)  # the last supernet epoch: SGD restarts, the first projection runs
    assert not m.w_optimizer.state and record["projection"] is not None and record["phase"] == "supernet"
    assert m.end_epoch(6, None)["phase"] == "tuning"


def test_options_and_the_paper_rows():
    for space, tune, none in (("nb201", 25, True), ("darts", 81, False)):
        options = cfg(space).options
        assert {k: options[k] for k in ("tune_epochs", "proj_interval", "proj_crit", "train_alpha", "proj_batches",
                                         "proj_augment", "include_none", "step_order")} == {
            "tune_epochs": tune, "proj_interval": 5, "proj_crit": "acc", "train_alpha": True, "proj_batches": 0,
            "proj_augment": True, "include_none": none, "step_order": "alpha_first"}
        paper = SearchConfig(space=space, method="darts_pt", C=16, N=5 if space == "nb201" else 2,
                             epochs=EPOCHS[space], batch_size=64, nesterov=False, weight_decay=3e-4, shuffle=True,
                             arch=ArchConfig(), train_portion=0.5)
        assert paper_mismatches(paper) == []
    m = method("darts")
    assert m.arch_first and m.clip_alpha is False
    assert all(m.model.get_mask(k)[:, m.space.ops.index("none")].sum() == 0 for k in m.kinds)  # the s5 space


# ---------------------------------------------------------------- op projection
@pytest.mark.parametrize("crit", ["acc", "loss"])
def test_the_op_carrying_the_signal_is_chosen_and_ties_go_to_the_first(crit, monkeypatch):
    m = method("nb201", proj_crit=crit)
    signal = torch.zeros(6, 5, dtype=torch.float64)
    signal[:, 3] = 1.0  # op 3 carries the accuracy on every edge
    monkeypatch.setattr(m, "measure", signal_measure(m, {"cell": signal}))
    for _ in range(3):
        m.project()
    chosen = [m.model.get_mask("cell")[e].argmax().item() for e, done in enumerate(m.projected["cell"]) if done]
    assert chosen == [3] * 3
    # No signal at all: every removal measures the same, and the first alive op wins.
    flat = method("darts", proj_crit=crit)
    monkeypatch.setattr(flat, "measure", lambda weights: (100, 1.0))
    flat.project()
    first = min(o for o in range(8) if flat.space.ops[o] != "none")
    for kind in flat.kinds:
        (edge,) = [e for e, done in enumerate(flat.projected[kind]) if done]
        assert flat.model.get_mask(kind)[edge].tolist() == [float(o == first) for o in range(8)]


def test_after_k_projections_exactly_k_rows_are_one_hot_and_the_rest_keep_their_softmax(monkeypatch):
    m = method("darts")
    spread_alpha(m)
    gen = torch.Generator().manual_seed(1)
    monkeypatch.setattr(m, "measure", signal_measure(m, {k: torch.rand(14, 8, generator=gen, dtype=torch.float64)
                                                         for k in m.kinds}))
    full = {kind: m.model.get_mask(kind).clone() for kind in m.kinds}
    for k in range(1, 15):
        m.project()
        for kind, alpha in zip(m.kinds, m.alphas, strict=True):
            weights = m.arch_weights()[kind].detach()
            one_hot = [e for e in range(14) if sorted(weights[e].tolist()) == [0.0] * 7 + [1.0]]
            assert one_hot == [e for e, done in enumerate(m.projected[kind]) if done] and len(one_hot) == k
            rest = [e for e in range(14) if e not in one_hot]
            torch.testing.assert_close(weights[rest], masked_softmax(alpha.detach(), full[kind])[rest], rtol=0, atol=0)
            assert weights[:, m.space.ops.index("none")].abs().sum() == 0


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_the_full_projection_ends_in_the_cell_the_measurements_favour(space, monkeypatch):
    m = method(space)
    gen = torch.Generator().manual_seed(2)
    signal = {k: torch.rand(m.space.num_edges, m.space.num_ops, generator=gen, dtype=torch.float64) for k in m.kinds}
    monkeypatch.setattr(m, "measure", signal_measure(m, signal))
    for _ in m.events:
        assert all(p is not None for p in m.project().values())
    assert all(p is None for p in m.project().values())  # nothing left to project
    genotype = m.genotype()
    for kind in m.kinds:
        mask = m.model.get_mask(kind)
        alive = [o for o in range(m.space.num_ops) if m.space.ops[o] != "none" or space == "nb201"]
        for e in range(m.space.num_edges):
            if mask[e].sum() > 0:  # a kept edge holds the op whose removal costs the most signal
                assert mask[e].argmax().item() == max(alive, key=lambda o: signal[kind][e, o].item())
        for group in m.groups:  # every node keeps the inputs with the most signal on their op
            kept = [e for e in group if mask[e].sum() > 0]
            strength = {e: max(signal[kind][e, o].item() for o in alive) for e in group}
            ranked = sorted(group, key=lambda e: -strength[e]) if len(group) > m.space.keep else list(group)
            assert sorted(kept) == sorted(ranked[: m.space.keep])
    assert genotype == m.space.genotype_from_masks(m.space.masks(m.model))
    if space == "darts":
        assert "none" not in str(genotype)


def test_a_topology_round_drops_the_edge_whose_removal_costs_least_the_last_on_ties(monkeypatch):
    m = method("darts")
    for kind in m.kinds:
        m.projected[kind] = [True] * 14
    m.group_done = {kind: [False, True, True, False] for kind in m.kinds}  # node 3 (edges 9..13) left
    monkeypatch.setattr(m, "measure", lambda weights: (100, 1.0))  # every removal alike
    done = m.project()
    for kind in m.kinds:
        assert done[kind]["group"] == 3 and done[kind]["kept"] == ["3<-0", "3<-1"]  # the last two dropped first
        assert [r["dropped"] for r in done[kind]["rounds"]] == ["3<-4", "3<-3", "3<-2"]
        assert m.model.get_mask(kind)[11:14].sum() == 0


# ---------------------------------------------------------------- the measurement
def test_removing_nb201_none_changes_no_logit_and_no_measurement():
    m = method("nb201", proj_augment=False)
    spread_alpha(m)
    weights = m._current()
    table = weights["cell"].clone()
    table[2, m.space.ops.index("none")] = 0.0
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(m.model(x, weights=weights)[1], m.model(x, weights={"cell": table})[1])
    assert m.measure(weights) == m.measure({"cell": table})


def test_a_measurement_runs_the_valid_half_in_train_mode_and_restores_the_bn_statistics():
    m = method("nb201", proj_augment=False)
    calls = []
    m.model.register_forward_hook(lambda module, args, out: calls.append((module.training, args[0].shape[0])))
    stem_bn = m.model.stem[1]
    before = [stem_bn.running_mean.clone(), stem_bn.running_var.clone(), stem_bn.num_batches_tracked.clone()]
    m.model.eval()
    correct, loss = m.measure(m._current())
    assert calls == [(True, 8)] * 3 and not m.model.training  # 24 images at batch 8, then back to eval
    assert 0 <= correct <= 24 and loss > 0
    for buf, old in zip((stem_bn.running_mean, stem_bn.running_var, stem_bn.num_batches_tracked), before, strict=True):
        assert torch.equal(buf, old)
    calls.clear()
    limited = method("nb201", proj_augment=False, proj_batches=1)
    limited.model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    limited.measure(limited._current())
    assert calls == [8]


def test_augmented_measurements_draw_from_the_attached_generator_and_plain_ones_do_not():
    for augment in (True, False):
        m = method("nb201", proj_augment=augment)
        state = m.data_generator.get_state()
        first = m.measure(m._current())
        assert (not torch.equal(m.data_generator.get_state(), state)) == augment
        m.data_generator.set_state(state)
        assert m.measure(m._current()) == first


# ---------------------------------------------------------------- α
@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_projected_alpha_rows_stay_bit_identical_while_the_rest_train(space, monkeypatch):
    m = method(space, epochs=EPOCHS[space])
    monkeypatch.setattr(m, "measure", lambda weights: (100, 1.0))
    m.project()
    m.project()
    before = [a.detach().clone() for a in m.alphas]
    data = batches(4)
    m.set_epoch(m.supernet_epochs)
    m.train_step(*data[0], *data[1])
    m.train_step(*data[2], *data[3])
    for kind, a, a0 in zip(m.kinds, m.alphas, before, strict=True):
        for e in range(m.space.num_edges):
            assert torch.equal(a[e].detach(), a0[e]) == m.projected[kind][e], (kind, e)


def test_the_blank_variant_never_trains_alpha():
    m = method("nb201", train_alpha=False)
    before = [a.detach().clone() for a in m.alphas]
    data = batches(2)
    m.set_epoch(0)
    m.train_step(*data[0], *data[1])
    assert all(torch.equal(a.detach(), a0) for a, a0 in zip(m.alphas, before, strict=True))
    assert m.a_optimizer.state_dict()["state"] == {}


# ---------------------------------------------------------------- resumes
@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_state_round_trip_resumes_identically(space, monkeypatch):
    data = batches(4)
    a = method(space, epochs=EPOCHS[space])
    b = method(space, seed=1, epochs=EPOCHS[space])
    if space == "darts":  # NB201 measures for real; here a stand-in keeps the 2 x 7 measurements per event quick
        gen = torch.Generator().manual_seed(4)
        signal = {k: torch.rand(14, 8, generator=gen, dtype=torch.float64) for k in a.kinds}
        for m in (a, b):
            monkeypatch.setattr(m, "measure", signal_measure(m, signal))
    a.set_epoch(0)
    a.train_step(*data[0], *data[1])
    a.project()
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    b.data_generator.set_state(a.data_generator.get_state())  # the loop checkpoints its generator
    projections = []
    for m in (a, b):
        m.set_epoch(1)
        m.train_step(*data[2], *data[3])
        projections.append(m.project())
    assert projections[0] == projections[1] and a.projected == b.projected
    for pa, pb in zip([*a.alphas, *a.weights], [*b.alphas, *b.weights], strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


# ---------------------------------------------------------------- the loop
def test_a_loop_search_projects_before_each_tuning_epoch(arrays, tmp_path):  # noqa: F811
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    raw["nb201"]["search"].update(C=4, N=1, epochs=3, batch_size=16, log_every=1)
    raw["nb201"]["methods"] = ["darts_pt"]
    raw["nb201"]["options"] = {"darts_pt": {"arch": {"lr": 0.003, "betas": [0.5, 0.999], "weight_decay": 0.001},
                                            "train_portion": 0.5, "tune_epochs": 2, "proj_interval": 1}}
    result = search(params_from_dict(raw).nb201.search("darts_pt"), arrays, tmp_path / "run")
    epochs = result["history"]["epochs"]
    assert [r["lr"] for r in epochs] == [0.025, 0.0025, 0.0025]
    assert [r["phase"] for r in epochs] == ["supernet", "tuning", "tuning"]
    assert [r["projection"] is not None for r in epochs] == [True, True, False]
    assert [sum(map(sum, r["alive"])) for r in epochs] == [26, 22, 22]
    assert all(len(r["projection"]["measured"]) == 5 for r in epochs[:2])  # every op of the edge, `none` too


def test_measurements_run_in_float32_through_the_bf16_forward():
    """With bf16 autocast on the training forward (the CUDA default) the projection's train-mode passes still run
    float32: they measure what the float32 supernet measures."""
    eager = method("nb201", proj_augment=False)
    fast = method("nb201", proj_augment=False)
    plan = SpeedPlan(channels_last=False, amp=True, compile=False, cudnn_benchmark=False)
    fast.model.forward = FastForward(fast.model, plan)
    correct, loss = fast.measure(fast._current())
    want_correct, want_loss = eager.measure(eager._current())
    assert (correct, loss) == (want_correct, want_loss)
    data = batches(2)
    fast.set_epoch(0)
    fast.train_step(*data[0], *data[1])  # the bf16 training step still runs beside it
    assert fast.project()["cell"] is not None
