"""SDARTS-RS and SDARTS-ADV (FAMILY.md "SDARTS-RS", "SDARTS-ADV"): the ε ramp, [SD]'s row clip, the weight step
on the perturbed probabilities (no softmax, α untouched), ε = 0 equal to DARTS, the clip counting ∂L/∂A, the
PGD attack (eval-mode BN, +sign steps of 2ε/7, random start, revert) and `none` left out of the DARTS space."""

import pytest
import torch

from isdarts.config import ArchConfig, SearchConfig
from isdarts.search.darts import Darts, exclude_ops, masked_softmax
from isdarts.search.smooth_darts import SmoothDartsAdv, SmoothDartsRs, clip_rows, epsilon_at
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.nb201.space import SPACE as NB201
from isdarts.spaces.nb201.supernet import Nb201Supernet

pytestmark = pytest.mark.usefixtures("one_thread")
SPACES = {"nb201": (NB201, Nb201Supernet), "darts": (DARTS_SPACE, DartsSupernet)}
CLASSES = {"sdarts_rs": SmoothDartsRs, "sdarts_adv": SmoothDartsAdv}


def make(method: str = "sdarts_rs", space: str = "nb201", seed: int = 0, epochs: int = 4, **options):
    space_obj, net = SPACES[space]
    torch.manual_seed(seed)
    cfg = SearchConfig(space=space, method=method, arch=ArchConfig(), epochs=epochs, options=options)
    return CLASSES[method](net(4, 1), space_obj, cfg, torch.Generator().manual_seed(seed))


def batch(seed: int = 1, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def probs_of(method) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {kind: method.relax(kind, a) for kind, a in zip(method.kinds, method.alphas, strict=True)}


def replay_uniform(method, probs, epsilon, state):
    """The uniform start the method draws from generator state `state`, recomputed from the spec."""
    gen = torch.Generator()
    gen.set_state(state)
    out = {}
    for kind in method.kinds:
        mask = method.model.get_mask(kind)
        draw = torch.rand(probs[kind].shape, generator=gen, dtype=probs[kind].dtype)
        out[kind] = clip_rows(probs[kind] + (2 * draw - 1) * epsilon * mask, mask)
    return out


def assert_on_simplex(table: torch.Tensor, mask: torch.Tensor) -> None:
    assert table.min().item() >= 0 and table.max().item() <= 1
    torch.testing.assert_close(table.sum(-1), torch.ones(table.shape[0], dtype=table.dtype), rtol=0, atol=1e-6)
    assert (table[mask == 0] == 0).all()


# ---------------------------------------------------------------- ε and the clip
def test_epsilon_ramps_linearly_over_t_over_e():
    assert epsilon_at(0, 50, 0.03, 0.3) == 0.03
    assert epsilon_at(25, 50, 0.03, 0.3) == pytest.approx(0.165, abs=1e-12)
    assert epsilon_at(49, 50, 0.03, 0.3) == pytest.approx(0.2946, abs=1e-12)
    method = make(epochs=50, lr_epoch_offset=1)
    lr = method.set_epoch(25)
    assert method.epsilon == pytest.approx(0.165, abs=1e-12)
    assert lr == pytest.approx(0.001 + (0.025 - 0.001) * (1 + torch.cos(torch.tensor(torch.pi * 26 / 50)).item()) / 2)


def reference_clip(row: list[float]) -> list[float]:
    """The spec's rule, one row at a time: remember the argmax, clamp to [0, 1], one-hot if empty, normalise."""
    top = max(range(len(row)), key=lambda i: (row[i], -i))
    clamped = [min(max(v, 0.0), 1.0) for v in row]
    if sum(clamped) == 0:
        clamped[top] = 1.0
    total = sum(clamped)
    return [v / total for v in clamped]


def test_the_clip_is_the_row_rule_not_a_simplex_projection():
    gen = torch.Generator().manual_seed(0)
    table = torch.rand(14, 8, generator=gen, dtype=torch.float64) * 1.6 - 0.5
    table[3] = -torch.rand(8, generator=gen, dtype=torch.float64)  # clamps to zero: the argmax becomes 1
    table[4, 2] = 1.7  # above 1: clamped to 1 before normalising
    mask = torch.ones(14, 8)
    out = clip_rows(table, mask)
    want = torch.tensor([reference_clip(r) for r in table.tolist()], dtype=torch.float64)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-15)
    assert out[3].tolist() == [1.0 if o == int(table[3].argmax()) else 0.0 for o in range(8)]
    assert_on_simplex(out, mask)
    # A Euclidean projection would shift every entry by one constant; this rule divides instead.
    row = torch.tensor([[0.6, 0.6, -0.2]], dtype=torch.float64)
    torch.testing.assert_close(clip_rows(row, torch.ones(1, 3)), torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64))


def test_the_clip_keeps_masked_entries_at_zero_and_picks_the_argmax_among_alive_ones():
    table = torch.tensor([[0.9, -0.1, -0.3], [0.2, 0.5, 0.4]])
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    out = clip_rows(table, mask)
    assert out[0].tolist() == [0.0, 1.0, 0.0]  # unmasked, entry 0 would have been the argmax
    torch.testing.assert_close(out[1], torch.tensor([0.0, 5 / 9, 4 / 9]))


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_random_perturbations_are_on_the_simplex_and_drawn_per_kind(space):
    method = make(space=space)
    probs = probs_of(method)
    state = method.noise.get_state()
    perturbed = method.uniform_start(probs, 0.3)
    replay = replay_uniform(method, probs, 0.3, state)
    for kind in method.kinds:
        assert_on_simplex(perturbed[kind], method.model.get_mask(kind))
        assert torch.equal(perturbed[kind], replay[kind])
        assert not torch.equal(perturbed[kind], probs[kind])
    if space == "darts":  # one draw per kind: the two kinds do not share their noise
        delta = {k: perturbed[k] - probs[k] for k in method.kinds}
        assert not torch.allclose(delta["normal"], delta["reduce"])


# ---------------------------------------------------------------- the weight step
@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_the_weight_step_mixes_by_the_perturbed_probabilities_and_leaves_alpha_bit_exact(space):
    method = make(space=space)
    method.set_epoch(3)  # ε = 0.03 + 0.27·3/4
    seen = []
    method.model.register_forward_pre_hook(lambda _m, _a, kw: seen.append(kw["weights"]), with_kwargs=True)
    x, y = batch()
    method.model.train()
    before = [a.detach().clone() for a in method.alphas]
    probs, state = probs_of(method), method.noise.get_state()
    method._weight_step(x, y)
    assert all(torch.equal(a, b) for a, b in zip(method.alphas, before, strict=True))
    assert all(a.grad is None for a in method.alphas)
    want = replay_uniform(method, probs, method.epsilon, state)
    (used,) = seen
    for kind in method.kinds:
        assert torch.equal(used[kind], want[kind])  # A itself: no softmax on top
        assert not torch.allclose(used[kind], torch.softmax(want[kind], -1))


class MaskedDarts(Darts):
    """DARTS with a softmax over the alive ops (the reference of SDARTS with `none` excluded)."""

    clip_alpha = False

    def relax(self, kind, alpha):
        return masked_softmax(alpha, self.model.get_mask(kind))


def darts_reference(space: str, seed: int = 0) -> Darts:
    space_obj, net = SPACES[space]
    torch.manual_seed(seed)
    model = net(4, 1)
    if space == "darts":
        exclude_ops(model, space_obj, ["none"])
    cfg = SearchConfig(space=space, method="darts1", arch=ArchConfig(), epochs=4,
                       options={"step_order": "alpha_first"})
    return MaskedDarts(model, space_obj, cfg, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_with_zero_epsilon_a_step_is_the_darts_step(space):
    ours, darts = make(space=space, eps_min=0.0, eps_max=0.0, clip_includes_alpha=False), darts_reference(space)
    for method in (ours, darts):
        method.set_epoch(0)
        for seed in (1, 2):
            method.train_step(*batch(seed), *batch(seed + 10))
    for a, b in zip([*ours.alphas, *ours.weights], [*darts.alphas, *darts.weights], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_alpha_moves_by_the_unperturbed_valid_step_only():
    """α first: after one step α is DARTS's whatever ε, so neither the perturbation nor the weight step touch it."""
    ours, darts = make(eps_min=0.3, eps_max=0.3, clip_includes_alpha=False), darts_reference("nb201")
    for method in (ours, darts):
        method.set_epoch(0)
        method.train_step(*batch(1), *batch(11))
    assert torch.equal(ours.alphas[0], darts.alphas[0])
    assert not all(torch.allclose(a, b) for a, b in zip(ours.weights, darts.weights, strict=True))


@pytest.mark.parametrize("include", [True, False])
def test_the_clip_counts_the_gradient_wrt_a_only_when_asked(monkeypatch, include):
    method = make(clip_includes_alpha=include)
    method.set_epoch(1)
    clipped = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(tensors, max_norm, *args, **kwargs):
        tensors = list(tensors)
        clipped.append([t.grad.clone() for t in tensors])
        return real(tensors, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    x, y = batch()
    method.model.train()
    probs, state = probs_of(method), method.noise.get_state()
    leaf = replay_uniform(method, probs, method.epsilon, state)["cell"].requires_grad_()
    (want,) = torch.autograd.grad(method.loss(x, y, weights={"cell": leaf})[0], leaf)
    method._weight_step(x, y)
    (grads,) = clipped
    assert len(grads) == len(method.weights) + include
    if include:
        torch.testing.assert_close(grads[-1], want, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- the attack
def eval_ce(method, weights, x, y) -> float:
    training = method.model.training
    method.model.eval()
    with torch.no_grad():
        value = method.loss(x, y, weights=weights)[0].item()
    method.model.train(training)
    return value


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_the_attack_raises_the_eval_mode_ce_and_leaves_bn_statistics_and_train_mode_alone(space):
    method = make("sdarts_adv", space, revert_if_no_gain=False)
    method.set_epoch(2)
    x, y = batch()
    method.model.train()
    buffers = {name: b.clone() for name, b in method.model.named_buffers()}
    probs = probs_of(method)
    perturbed = method.perturb(probs, x, y)
    assert method.model.training
    assert all(torch.equal(b, buffers[name]) for name, b in method.model.named_buffers())
    assert eval_ce(method, perturbed, x, y) > eval_ce(method, probs, x, y)
    for kind in method.kinds:
        assert_on_simplex(perturbed[kind], method.model.get_mask(kind))
    bn = method.end_epoch(1, None)["attack_bn"]
    assert bn["mode"] == "eval" and bn["running_stats"] >= 2 and bn["batch_stats"] > 0


def test_a_train_mode_attack_moves_the_tracked_bn_statistics():
    method = make("sdarts_adv", attack_bn_mode="train")
    method.model.train()
    buffers = {name: b.clone() for name, b in method.model.named_buffers() if "running_mean" in name}
    method.perturb(probs_of(method), *batch())
    assert method.model.training and buffers
    assert not all(torch.equal(b, buffers[n]) for n, b in method.model.named_buffers() if n in buffers)
    bn = method.end_epoch(1, None)["attack_bn"]
    assert bn["mode"] == "train" and bn["running_stats"] == 0 and bn["batch_stats"] > len(buffers)


class LinearLoss:
    """A mock loss c·A with a chosen value per call, recording what it was given."""

    def __init__(self, kinds, values=None):
        gen = torch.Generator().manual_seed(7)
        self.coef = {kind: torch.randn(6 if kinds == ("cell",) else 14, 5 if kinds == ("cell",) else 8,
                                       generator=gen) for kind in kinds}
        self.values, self.calls = values, []

    def __call__(self, x, y, weights=None):
        self.calls.append({k: w.detach().clone() for k, w in weights.items()})
        linear = sum((self.coef[k] * w).sum() for k, w in weights.items())
        if self.values is not None:  # the gradient of c·A, the value chosen
            linear = linear - linear.detach() + self.values(len(self.calls) - 1)
        return linear, None


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_steps_2eps_over_7_along_plus_sign_of_the_gradient_within_the_eps_ball(random_start):
    method = make("sdarts_adv", random_start=random_start)
    method.set_epoch(3)
    eps = method.epsilon
    mock = LinearLoss(method.kinds)
    method.loss = mock
    probs, state = probs_of(method), method.noise.get_state()
    out = method.perturb(probs, *batch())
    s, c, mask = probs["cell"], mock.coef["cell"], method.model.get_mask("cell")
    assert len(mock.calls) == 1 + 7 + 1 and torch.equal(mock.calls[0]["cell"], s)
    start = replay_uniform(method, probs, eps, state)["cell"] if random_start else s
    assert torch.equal(mock.calls[1]["cell"], start)
    a = start
    for i in range(7):
        a = clip_rows(s + (a + (2 * eps / 7) * c.sign() - s).clamp(-eps, eps), mask)
        torch.testing.assert_close(mock.calls[2 + i]["cell"], a, rtol=0, atol=1e-7)
    if not random_start:  # the first step: S + 2ε/7·sign(∂CE/∂A), then the clip
        torch.testing.assert_close(mock.calls[2]["cell"], clip_rows(s + 2 * eps / 7 * c.sign(), mask),
                                   rtol=0, atol=1e-7)
    torch.testing.assert_close(out["cell"], a, rtol=0, atol=1e-7)  # c·A rose: kept
    assert_on_simplex(out["cell"], mask)


@pytest.mark.parametrize("revert", [True, False])
def test_a_failed_attack_falls_back_to_exactly_s_when_asked(revert):
    method = make("sdarts_adv", revert_if_no_gain=revert)
    method.set_epoch(2)
    method.loss = LinearLoss(method.kinds, values=lambda i: 10.0 if i == 0 else 5.0)  # CE after < CE before
    probs = probs_of(method)
    out = method.perturb(probs, *batch())
    assert torch.equal(out["cell"], probs["cell"]) == revert
    record = method.end_epoch(1, None)
    assert record["attack_failed"] == 1.0 and record["attack_gain"] == (0.0 if revert else -5.0)


# ---------------------------------------------------------------- options and the space
def test_none_is_left_out_of_the_darts_space_by_default_and_kept_on_nb201():
    darts = make(space="darts")
    none = DARTS_SPACE.ops.index("none")
    for kind in darts.kinds:
        assert (darts.model.get_mask(kind)[:, none] == 0).all()
        assert (darts.arch_weights()[kind][:, none] == 0).all()
    genotype = darts.genotype()
    assert all(op != "none" for cell in (genotype.normal, genotype.reduce) for node in cell for op, _ in node)
    assert (make(space="darts", include_none=True).model.get_mask("normal") == 1).all()
    assert (make().model.get_mask("cell") == 1).all() and make().clip_alpha and not darts.clip_alpha


@pytest.mark.parametrize(("method", "options", "message"), [
    ("sdarts_rs", {"eps_min": 0.5, "eps_max": 0.3}, "eps_min <= eps_max"),
    ("sdarts_rs", {"lr_epoch_offset": 2}, "lr_epoch_offset must be 0 or 1"),
    ("sdarts_adv", {"pgd_steps": 0}, "pgd_steps >= 1"),
    ("sdarts_adv", {"attack_bn_mode": "frozen"}, "attack_bn_mode must be eval or train"),
])
def test_options_that_cannot_work_are_refused(method, options, message):
    with pytest.raises(ValueError, match=message):
        make(method, **options)
