"""The GPU fast path on CPU: its params are validated, `auto` means what isdarts.search.speed says, a compiled
supernet stays exact across mask changes, and bf16 training does not move which op the IIM prunes beyond
float32 noise."""

from pathlib import Path

import pytest
import torch
import yaml
from fakes import write_fake_cifar10

from isdarts.config import ConfigError, params_from_dict
from isdarts.data.cifar import load_cifar10, locate_cifar10
from isdarts.data.device_loader import DeviceImages
from isdarts.search import speed
from isdarts.search.iim import measure_iim
from isdarts.search.loop import build_method
from isdarts.search.speed import FastForward, SpeedPlan, apply_speed, configure_backends, resolve_speed
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.nb201.supernet import Nb201Supernet
from isdarts.train.runtime import make_deterministic, make_generator

ROOT = Path(__file__).resolve().parents[1]
SPEED_KEYS = ("channels_last", "amp", "compile", "cudnn_benchmark", "cuda_graphs", "compile_iim")
CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")


def quick_raw() -> dict:
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    return raw


def nb201_cfg(**search):
    raw = quick_raw()
    raw["nb201"]["search"].update(search)
    return params_from_dict(raw).nb201.search("isdarts")


@pytest.mark.parametrize("space", ["nb201", "darts"])
@pytest.mark.parametrize("key", SPEED_KEYS)
def test_every_speed_setting_refuses_a_bad_value_naming_the_key(space, key):
    raw = quick_raw()
    raw[space]["search"][key] = "fast"
    expected = rf"{space}\.search\.{key} = 'fast' is not allowed; expected auto, true or false"
    with pytest.raises(ConfigError, match=expected):
        params_from_dict(raw)
    raw = quick_raw()
    del raw[space]["search"][key]
    with pytest.raises(ConfigError, match=rf"missing key {space}\.search\.{key}"):
        params_from_dict(raw)


def test_a_method_section_may_override_a_speed_setting_and_is_checked_too():
    raw = quick_raw()
    raw["nb201"]["options"]["darts1"]["amp"] = 1
    with pytest.raises(ConfigError, match=r"nb201\.options\.darts1\.amp = 1 is not allowed"):
        params_from_dict(raw)
    raw["nb201"]["options"]["darts1"]["amp"] = True
    assert params_from_dict(raw).nb201.search("darts1").amp is True


def test_every_profile_sets_every_speed_setting_to_auto():
    for path in [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))]:
        raw = yaml.safe_load(path.read_text())
        for space in ("nb201", "darts"):
            assert {k: raw[space]["search"][k] for k in SPEED_KEYS} == dict.fromkeys(SPEED_KEYS, "auto"), path


def test_auto_rules_per_space_and_device(monkeypatch):
    params = params_from_dict(quick_raw())
    nb201, darts = params.nb201.search("isdarts"), params.darts.runs.search("isdarts")
    assert resolve_speed(nb201, CPU) == SpeedPlan(channels_last=False, amp=False, compile=False, cudnn_benchmark=False)
    assert resolve_speed(darts, CPU) == SpeedPlan(channels_last=True, amp=False, compile=False, cudnn_benchmark=False)
    # A CUDA device is only named here, never used: the rules read the device type (and bf16 support).
    monkeypatch.setattr("isdarts.search.speed._bf16_ok", lambda device: device.type == "cuda")
    cuda = torch.device("cuda")
    for cfg in (nb201, darts):
        assert resolve_speed(cfg, cuda) == SpeedPlan(channels_last=True, amp=True, compile=True, cudnn_benchmark=True,
                                                     cuda_graphs=True)
    forced = nb201_cfg(channels_last=True, amp=True, compile=False, cudnn_benchmark=False)
    assert resolve_speed(forced, CPU) == SpeedPlan(channels_last=True, amp=True, compile=False, cudnn_benchmark=False)


def test_bf16_on_a_cpu_without_bf16_instructions_is_allowed_with_a_warning(monkeypatch, caplog):
    forced, auto = resolve_speed(nb201_cfg(amp=True), CPU), resolve_speed(nb201_cfg(), CPU)
    assert forced.amp is True and auto.amp is False  # auto never asks for bf16 on CPU
    assert isinstance(speed._cpu_has_bf16(), bool)  # the real oneDNN query answers on this machine
    monkeypatch.setattr("isdarts.search.speed._cpu_has_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="isdarts.search.speed"):
        apply_speed(Nb201Supernet(2, 1), forced)
    assert not caplog.records
    monkeypatch.setattr("isdarts.search.speed._cpu_has_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="isdarts.search.speed"):
        apply_speed(Nb201Supernet(2, 1), forced)
        apply_speed(Nb201Supernet(2, 1), auto)  # no bf16 asked for: no warning
    assert [r.getMessage() for r in caplog.records] == [
        "amp = true on a CPU without bf16 instructions: oneDNN emulates bf16 there, which is usually slower than "
        "float32; set amp to auto or false"
    ]


def test_compile_iim_auto_is_on_for_cpu_iim_searches_at_paper_network_and_image_size(monkeypatch):
    """At C=16, 32x32 the compiled reductions saved 0.85-0.94 ms per IIM image; at the quick profile's C=8,
    16x16 0.04 ms, less than compiling costs (BENCHMARKS.md)."""
    raw = quick_raw()
    assert resolve_speed(params_from_dict(raw).nb201.search("isdarts"), CPU).compile_iim is False  # quick sizes
    for space in ("nb201", "darts"):
        raw[space]["search"].update(C=16, image_size=32)
    params = params_from_dict(raw)
    assert resolve_speed(params.nb201.search("isdarts"), CPU).compile_iim is True
    assert resolve_speed(params.nb201.search("idarts"), CPU).compile_iim is True
    assert resolve_speed(params.darts.runs.search("isdarts"), CPU).compile_iim is True
    assert resolve_speed(params.nb201.search("darts1"), CPU).compile_iim is False  # no IIM at all
    raw["nb201"]["search"]["compile_iim"] = False
    assert resolve_speed(params_from_dict(raw).nb201.search("isdarts"), CPU).compile_iim is False
    monkeypatch.setattr("isdarts.search.speed._bf16_ok", lambda device: device.type == "cuda")
    assert resolve_speed(params.nb201.search("isdarts"), torch.device("cuda")).compile_iim is False


def test_compile_iim_is_refused_on_cuda_where_it_was_never_run():
    with pytest.raises(ConfigError, match=r"nb201\.search: compile_iim = true has not been run on CUDA yet .*; set "
                                          r"compile_iim to auto or false"):
        resolve_speed(nb201_cfg(compile_iim=True), torch.device("cuda"))
    assert resolve_speed(nb201_cfg(compile_iim=True), CPU).compile_iim is True


def test_cuda_graphs_are_refused_off_cuda_naming_the_key_and_the_fix():
    cfg = nb201_cfg(cuda_graphs=True)
    with pytest.raises(ConfigError, match=r"nb201\.search: cuda_graphs = true needs a CUDA device, and this search "
                                          r"runs on cpu; set cuda_graphs to auto or false"):
        resolve_speed(cfg, CPU)
    assert resolve_speed(nb201_cfg(cuda_graphs=False), CPU).cuda_graphs is False


def test_unfused_supernets_stay_nchw_on_cuda_where_their_channels_last_gradients_were_wrong(monkeypatch):
    """Measured on an H200 (BENCHMARKS.md, GPU check): unfused channels-last gradients up to 1.3x the largest
    gradient away from float64, fused ones and NCHW right. `auto` avoids it; asking for it is refused."""
    monkeypatch.setattr("isdarts.search.speed._bf16_ok", lambda device: device.type == "cuda")
    cuda = torch.device("cuda")
    raw = quick_raw()
    for space in ("nb201", "darts"):
        raw[space]["search"]["fused_ops"] = False
    params = params_from_dict(raw)
    for cfg in (params.nb201.search("isdarts"), params.darts.runs.search("isdarts")):
        assert resolve_speed(cfg, cuda).channels_last is False
    assert resolve_speed(params.darts.runs.search("isdarts"), CPU).channels_last is True  # right on CPU
    forced = nb201_cfg(fused_ops=False, channels_last=True)
    expected = (r"nb201\.search: channels_last = true with fused_ops = false gives wrong gradients on CUDA"
                r".*set channels_last to auto or false, or fused_ops to true")
    with pytest.raises(ConfigError, match=expected):
        resolve_speed(forced, cuda)
    assert resolve_speed(forced, CPU).channels_last is True


def test_auto_leaves_the_cpu_forward_untouched():
    method = build_method(nb201_cfg(C=4, N=1), 10, CPU, make_generator(CPU, 0))
    assert "forward" not in vars(method.model)  # the class's own forward: CPU results cannot change
    assert method.model.stem[0].weight.is_contiguous()  # NB201 on CPU stays NCHW
    assert not torch.backends.cudnn.benchmark


def _twins(cls, **kwargs):
    torch.manual_seed(0)
    eager = cls(channels=4, cells_per_stage=1, **kwargs)
    other = cls(channels=4, cells_per_stage=1, **kwargs)
    other.load_state_dict(eager.state_dict())
    return eager, other


def test_a_compiled_supernet_matches_eager_after_each_mask_change():
    """aot_eager backend: dynamo's graph capture and guards (what decides whether a new mask recompiles)
    without inductor's C++ code generation, which is too slow for a unit test on this CPU."""
    eager, compiled = _twins(Nb201Supernet)
    plan = SpeedPlan(channels_last=False, amp=False, compile=True, cudnn_benchmark=False, compile_backend="aot_eager")
    configure_backends(plan)
    apply_speed(compiled, plan)
    assert isinstance(compiled.forward, FastForward) and set(compiled.state_dict()) == set(eager.state_dict())
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 8, 8, generator=gen)
    mask = torch.ones(6, 5)
    for dropped in (None, 0, 3):  # all alive, then two shrink steps
        if dropped is not None:
            mask[:, dropped] = 0
            eager.set_mask("cell", mask)
            compiled.set_mask("cell", mask)
        for model in (eager, compiled):
            model.zero_grad()
            model(x)[1].square().mean().backward()
        torch.testing.assert_close(compiled(x)[1], eager(x)[1], rtol=1e-5, atol=1e-6)
        for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    # The probe pass (IIM) and eval mode always run eager.
    compiled.eval()
    torch.testing.assert_close(compiled(x)[1], eager.eval()(x)[1], rtol=1e-5, atol=1e-6)


def test_second_order_darts_steps_the_same_compiled_as_eager():
    """The riskiest caller of a compiled forward: `functional_call` at unrolled weights, then weights moved in
    place for the Hessian-vector product. Two steps compiled (aot_eager) and eager must agree exactly."""
    gen = torch.Generator().manual_seed(3)
    batch = [torch.randn(8, 3, 16, 16, generator=gen), torch.randint(0, 10, (8,), generator=gen)] * 2
    states = []
    for compiled in (False, True):
        raw = quick_raw()
        raw["nb201"]["search"].update(C=4, N=1, channels_last=False)
        cfg = params_from_dict(raw).nb201.search("darts2")
        torch.manual_seed(0)
        method = build_method(cfg, 10, CPU, make_generator(CPU, 0))
        if compiled:
            plan = SpeedPlan(channels_last=False, amp=False, compile=True, cudnn_benchmark=False,
                             compile_backend="aot_eager")
            configure_backends(plan)
            method.model.forward = FastForward(method.model, plan)
        method.set_epoch(0)
        for _ in range(2):
            method.train_step(*batch)
        state = {k: v.detach().clone() for k, v in method.state_dict()["model"].items()}
        states.append({**state, **{f"alpha.{k}": a.detach().clone() for k, a in method.alpha.items()}})
    for name, value in states[0].items():
        torch.testing.assert_close(states[1][name], value, rtol=1e-5, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")


def test_amp_autocasts_the_training_forward_only_and_returns_float32():
    eager, amp = _twins(DartsSupernet)
    apply_speed(amp, SpeedPlan(channels_last=True, amp=True, compile=False, cudnn_benchmark=False))
    x = torch.randn(2, 3, 8, 8)
    amp.eval()
    eager.eval()
    torch.testing.assert_close(amp(x)[1], eager(x)[1], rtol=1e-5, atol=1e-6)  # eval: float32, as the IIM pass
    amp.train()
    eager.train()
    features, logits = amp(x)
    assert features.dtype == logits.dtype == torch.float32
    assert not torch.equal(logits, eager.to(memory_format=torch.channels_last)(x)[1])  # it did run in bf16


# ----------------------------------------------------------------- bf16 and the IIM's pruning decision
def _trained_iim(train: DeviceImages, amp: bool, order_seed: int) -> torch.Tensor:
    """The (6, 5) IIM table after 3 epochs of the real IS-DARTS weight step, from one fixed initialisation."""
    cfg = nb201_cfg(C=8, N=1, batch_size=32, amp=amp, compile=False)
    make_deterministic(0)
    method = build_method(cfg, 10, CPU, make_generator(CPU, 2))
    gen = make_generator(CPU, order_seed)
    for epoch in range(3):
        method.set_epoch(epoch)
        for x, y in train.batches(32, augment=True, shuffle=True, generator=gen):
            method.train_step(x, y)
    return measure_iim(method.model, train.batches(64, augment=False, shuffle=False, generator=None))["cell"]


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = (t.argsort().argsort().double() for t in (a, b))
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def _next_pruned(table: torch.Tensor) -> list[int]:
    """Per edge, the op the second shrink step removes: the largest finite hooked IIM (`none`, +inf, goes first)."""
    return table.masked_fill(~table.isfinite(), float("-inf")).argmax(dim=1).tolist()


def test_bf16_training_changes_the_iim_pruning_no_more_than_float32_noise(tmp_path):
    """bf16 against float32 noise, measured the same way.

    The reference is a float32 run (data-order seed 0). "Float32 noise" is how far two more float32 runs
    from the same initialisation but other data orders (seeds 1, 2) land from it; the bf16 run uses the
    reference's data order. Both are compared to the reference by (a) the Spearman correlation of the 24
    finite IIM entries (the ordering every later shrink step reads) and (b) on how many of the 6 edges the
    next pruned op (the largest finite IIM; `none` is +inf and always goes first) is the same. bf16 passes
    if it is at least as close as the farther of the two float32 runs on both counts, and `none` is still
    pruned first everywhere. The IIM pass itself runs in float32 in every run (eval mode, eager).
    """
    write_fake_cifar10(tmp_path, n_per_batch=64, n_test=10, seed=0)
    arrays = load_cifar10(locate_cifar10(tmp_path, download=False, subset_fallback=tmp_path))
    train = DeviceImages(arrays.train_x, arrays.train_y, CPU)
    reference = _trained_iim(train, amp=False, order_seed=0)
    noise = [_trained_iim(train, amp=False, order_seed=s) for s in (1, 2)]
    bf16 = _trained_iim(train, amp=True, order_seed=0)
    for table in (reference, bf16, *noise):
        assert table[:, 0].isinf().all() and table[:, 1:].isfinite().all()  # op 0 is `none`

    def closeness(table: torch.Tensor) -> tuple[float, int]:
        agree = sum(a == b for a, b in zip(_next_pruned(table), _next_pruned(reference), strict=True))
        return _spearman(table[:, 1:].flatten(), reference[:, 1:].flatten()), agree

    rho_bf16, agree_bf16 = closeness(bf16)
    rho_noise, agree_noise = zip(*map(closeness, noise), strict=True)
    assert rho_bf16 >= min(rho_noise), (rho_bf16, rho_noise)
    assert agree_bf16 >= min(agree_noise), (agree_bf16, agree_noise)
