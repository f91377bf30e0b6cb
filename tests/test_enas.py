"""ENAS (FAMILY.md "Sampling: ENAS"): the cosine wave, the controller's bounds, log-probabilities and init,
AutoDL's frozen baseline and entropy reward, 50 controller steps per epoch, the single-path weight step, the
selections, and exact resumes."""

import io
import math

import pytest
import torch
from torch import nn

from isdarts.config import ArchConfig, SearchConfig
from isdarts.data.device_loader import DeviceImages
from isdarts.search.enas import Enas, reinforce_terms, wave_lr
from isdarts.search.enas_controller import Controller
from isdarts.search.setn import enumerate_cells
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")
BOUND = 1 / (1 + 4 * math.exp(-5))  # the largest probability tanh_constant 2.5 allows among 5 ops


def cfg(epochs: int = 3, **options) -> SearchConfig:
    return SearchConfig(space="nb201", method="enas", arch=ArchConfig(lr=1e-3, betas=(0.0, 0.999), weight_decay=0.0),
                        epochs=epochs, batch_size=4, lr=0.05, lr_min=0.0005, train_portion=0.5, options=options)


def method(seed: int = 0, model: nn.Module | None = None, epochs: int = 3, **options) -> Enas:
    torch.manual_seed(seed)
    model = Nb201Supernet(channels=4, cells_per_stage=1) if model is None else model
    return Enas(model, NB201, cfg(epochs, **options), torch.Generator().manual_seed(seed))


class PathNet(nn.Module):
    """A stand-in supernet predicting class (op of the first edge); cells whose first edge is 3 score 100 %."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, x, weights=None, probe=None):
        self.calls += 1
        logits = torch.zeros(len(x), 10)
        logits[:, weights["cell"].index[0]] = 1.0
        return None, logits + 0 * self.w


def valid(n: int = 8, label: int = 3) -> DeviceImages:
    x = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    return DeviceImages(x, torch.full((n,), label), "cpu")


def test_the_learning_rate_is_a_cosine_wave_of_period_twenty_epochs():
    lrs = {e: wave_lr(e, 10, 0.05, 0.0005) for e in (0, 5, 10, 20, 249)}
    assert lrs[0] == pytest.approx(0.05) and lrs[5] == pytest.approx(0.02525) and lrs[10] == pytest.approx(0.0005)
    assert lrs[20] == pytest.approx(0.05) and lrs[249] == pytest.approx(0.0017114, abs=1e-7)
    m = method(epochs=250, controller_layers=1)
    assert m.set_epoch(249) == m.w_optimizer.param_groups[0]["lr"] == lrs[249]
    assert method(epochs=4, lr_period=0).set_epoch(4) == pytest.approx(0.0005)  # 0: one cosine over the search


def test_controller_probabilities_and_entropies_are_bounded():
    controller = Controller(6, 5, generator=torch.Generator().manual_seed(0))
    cells = enumerate_cells(6, 5)
    inputs = torch.cat([controller.start.expand(1, len(cells), -1), controller.embedding(cells[:, :-1].T)])
    for scale in (1.0, 1e4):
        with torch.no_grad():
            controller.head.weight.mul_(scale)
            probs = torch.softmax(controller.logits(controller.lstm(inputs)[0]), dim=-1)
        assert probs.max().item() <= BOUND + 1e-6
    # The most peaked controller: one op's logit at +2.5, the others at -2.5 on every edge.
    with torch.no_grad():
        controller.head.weight.zero_()
        controller.head.bias.copy_(torch.tensor([1e3, -1e3, -1e3, -1e3, -1e3]))
    log_p, entropy, cells = controller(16, torch.Generator().manual_seed(1))
    assert math.exp(log_p.max().item() / 6) == pytest.approx(BOUND, abs=1e-6)
    q = (1 - BOUND) / 4
    least = -BOUND * math.log(BOUND) - 4 * q * math.log(q)  # the smallest per-edge entropy
    assert least == pytest.approx(0.15782, abs=1e-5) and 6 * least == pytest.approx(0.9469, abs=1e-4)
    torch.testing.assert_close(entropy, torch.full((16,), 6 * least), atol=1e-5, rtol=0)
    with torch.no_grad():
        controller.head.bias.zero_()
        _, entropy, _ = controller(4)
    torch.testing.assert_close(entropy, torch.full((4,), 6 * math.log(5)), atol=1e-5, rtol=0)


def test_log_probabilities_sum_to_one_match_the_sampler_and_are_uniform_at_zero_logits():
    controller = Controller(6, 5, generator=torch.Generator().manual_seed(2))
    cells = enumerate_cells(6, 5)
    with torch.no_grad():
        log_p = controller.log_probs(cells)
    assert log_p.double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    sampled_log_p, _, sampled = controller(8, torch.Generator().manual_seed(3))
    rows = [sum(c * 5 ** (5 - e) for e, c in enumerate(cell)) for cell in sampled]  # index in the enumeration
    torch.testing.assert_close(sampled_log_p.detach(), log_p[rows], atol=1e-5, rtol=0)
    # Sample frequencies of the first edge follow its (unconditional) distribution.
    counts = torch.bincount(torch.tensor([c[0] for c in controller(4000, torch.Generator().manual_seed(4))[2]]),
                            minlength=5)
    marginal = torch.stack([log_p[cells[:, 0] == o].exp().sum() for o in range(5)])
    torch.testing.assert_close(counts / 4000, marginal, atol=0.025, rtol=0)
    with torch.no_grad():
        controller.head.weight.zero_()
        controller.head.bias.zero_()
        uniform = controller.log_probs(cells)
    torch.testing.assert_close(uniform, torch.full((15625,), -6 * math.log(5)), atol=1e-5, rtol=0)
    assert -6 * math.log(5) == pytest.approx(-9.6566, abs=1e-4)


def test_controller_init_follows_the_spec_and_the_seed():
    a = Controller(6, 5, generator=torch.Generator().manual_seed(5))
    b = Controller(6, 5, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    small = {"start", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "embedding.weight", "head.weight"}
    for name, p in a.named_parameters():
        bound = 0.1 if name in small else 1 / math.sqrt(32)
        assert p.abs().max().item() <= bound and p.abs().max().item() > 0.8 * bound, name
    assert {n for n, _ in a.named_parameters()} >= small | {"lstm.weight_ih_l1", "lstm.bias_hh_l1", "head.bias"}


def test_autodl_baseline_terms():
    adv, b = reinforce_terms(0.7, torch.tensor(0.0), 1e-4, 0.5, 0.99)
    assert b == pytest.approx(0.502) and adv.item() == pytest.approx(0.198)
    entropy = torch.tensor(3.21, requires_grad=True)
    adv, b = reinforce_terms(0.42, entropy, 1e-4, None, 0.99)
    assert b == 0.42 and torch.equal(adv, 1e-4 * entropy) and adv.requires_grad  # epoch 0: the entropy term only
    adv, _ = reinforce_terms(0.6, entropy, 1e-4, 0.5, 0.99)
    assert adv.requires_grad  # the entropy in the reward keeps its gradient


def controller_state(m: Enas) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.controller.parameters()]


def test_an_epoch_takes_fifty_controller_steps_of_twenty_samples_and_epoch_zero_learns_only_from_entropy():
    net = PathNet()
    m = method(model=net, entropy_weight=0.0)
    m.attach_data(valid(), torch.Generator().manual_seed(0))
    steps = []
    real_step = m.c_optimizer.step
    m.c_optimizer.step = lambda *a, **k: steps.append(1) or real_step(*a, **k)
    before = controller_state(m)
    m.train_controller()
    assert len(steps) == 50 and net.calls == 1000
    # Epoch 0: b = acc, so without the entropy term the advantage is 0 and nothing moves.
    assert all(torch.equal(p, q) for p, q in zip(m.controller.parameters(), before, strict=True))
    assert m.baseline in (0.0, 1.0)  # the last sample's accuracy
    with_entropy = method(model=PathNet())
    with_entropy.attach_data(valid(), torch.Generator().manual_seed(0))
    before = controller_state(with_entropy)
    with_entropy.train_controller()
    assert any(not torch.equal(p, q) for p, q in zip(with_entropy.controller.parameters(), before, strict=True))


def test_the_baseline_is_frozen_within_an_epoch_in_autodl_mode_and_moves_per_sample_in_running_ema(monkeypatch):
    accs = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]  # two steps of three samples
    seen = []
    real = reinforce_terms

    def spy(acc, entropy, weight, baseline, decay):
        seen.append(baseline)
        return real(acc, entropy, weight, baseline, decay)

    monkeypatch.setattr("isdarts.search.enas.reinforce_terms", spy)
    options = {"controller_steps": 2, "controller_aggregate": 3, "entropy_weight": 0.0}
    m = method(**options)
    m.attach_data(valid(), torch.Generator().manual_seed(0))
    batches = iter([accs[:3], accs[3:]] * 2)
    monkeypatch.setattr(m, "_accuracies", lambda cells, stream: next(batches))
    m.train_controller()
    assert seen == [None] * 6 and m.baseline == 0.0  # epoch 0: b = acc; b_1 = the last sample's b
    m.baseline = 0.5
    means = m.train_controller()
    assert seen[6:] == [0.5] * 6  # frozen for the whole epoch
    assert m.baseline == pytest.approx(0.5 - 0.01 * 0.5) and means["baseline_mean"] == pytest.approx(
        sum(0.5 - 0.01 * (0.5 - a) for a in accs) / 6)
    ema = method(baseline_mode="running_ema", **options)
    ema.attach_data(valid(), torch.Generator().manual_seed(0))
    batches = iter([accs[:3], accs[3:]])
    monkeypatch.setattr(ema, "_accuracies", lambda cells, stream: next(batches))
    ema.train_controller()
    b = accs[0]
    for a in accs[1:]:
        b = b - 0.01 * (b - a)
    assert len(seen) == 12 and ema.baseline == pytest.approx(b)  # moved after every sample


def test_the_weight_step_trains_one_sampled_path_on_the_train_batch_only():
    m = method()
    gen = torch.Generator().manual_seed(6)
    x, y = torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen)
    nan = torch.full_like(x, float("nan"))
    seen = []
    real_forward = m.model.forward
    m.model.forward = lambda x, weights=None, probe=None: seen.append(weights["cell"]) or real_forward(x, weights)
    controller = controller_state(m)
    m.set_epoch(0)
    loss, _ = m.train_step(x, y, nan, y)
    assert math.isfinite(loss.item()) and len(seen) == 1 and len(seen[0].index) == 6
    assert all(torch.equal(p, q) for p, q in zip(m.controller.parameters(), controller, strict=True))


def test_end_epoch_selects_among_ten_samples_and_the_last_among_a_hundred(monkeypatch):
    net = PathNet()
    m = method(model=net, controller_steps=1, controller_aggregate=1)
    m.attach_data(valid(), torch.Generator().manual_seed(0))
    counts = []
    real = m.select
    monkeypatch.setattr(m, "select", lambda n: counts.append(n) or real(n))
    for done in (1, 2, 3):
        record = m.end_epoch(done, None)
    assert counts == [10, 10, 100]
    assert record["selected_valid_acc"] == 100.0 and m.selected[0] == 3  # 100 samples find a first edge of 3
    assert m.genotype().op_indices() == m.selected
    weights = m.arch_weights()["cell"]
    torch.testing.assert_close(weights.sum(-1), torch.ones(6, dtype=torch.float64))


def test_state_round_trip_resumes_identically():
    gen = torch.Generator().manual_seed(7)
    batches = [(torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen)) for _ in range(4)]
    data = valid(8)
    options = {"controller_steps": 2, "controller_aggregate": 2, "monitor_samples": 2}
    a = method(**options)
    a.attach_data(data, torch.Generator().manual_seed(8))
    a.set_epoch(0)
    a.train_step(*batches[0], *batches[1])
    a.end_epoch(1, None)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = method(seed=1, **options)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    b.attach_data(data, torch.Generator().manual_seed(9))
    assert b.selected == a.selected and b.baseline == a.baseline
    for m in (a, b):
        m.data_generator.manual_seed(10)
        m.set_epoch(1)
        m.train_step(*batches[2], *batches[3])
        m.end_epoch(2, None)
    pairs = zip([*a.weights, *a.controller.parameters()], [*b.weights, *b.controller.parameters()], strict=True)
    for pa, pb in pairs:
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert a.selected == b.selected and a.baseline == b.baseline


def test_settings_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="baseline_decay"):
        method(baseline_decay=1.5)
    with pytest.raises(ValueError, match="controller_aggregate"):
        method(controller_aggregate=0)
    with pytest.raises(RuntimeError, match="attach_data"):
        method().train_controller()
