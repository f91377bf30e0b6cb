"""The fused cells against the unfused reference: outputs, IIM tables and gradients for every mask the
search passes through (all alive, after each shrink step, the final cell), and one training step of every
method, on both spaces, in both memory formats."""

from pathlib import Path

import pytest
import torch
import yaml

from isdarts.config import params_from_dict
from isdarts.registry import METHODS, space_spec
from isdarts.search.iim import measure_iim
from isdarts.search.loop import build_method
from isdarts.search.shrink import shrink_step
from isdarts.spaces.darts.supernet import DartsSupernet
from isdarts.spaces.fused import avg_pool_3x3, conv_stacked
from isdarts.spaces.nb201.supernet import Nb201Supernet

ROOT = Path(__file__).resolve().parents[1]
TOL = {"rtol": 1e-4, "atol": 2e-5}
pytestmark = pytest.mark.usefixtures("one_thread")


def twins(space: str, channels_last: bool = False):
    """A fused supernet and an unfused one with the same weights, in the same memory format (channels-last
    convs round differently from NCHW ones: that is a property of the kernels, not of fusing)."""
    cls, kwargs = (Nb201Supernet, {}) if space == "nb201" else (DartsSupernet, {})
    torch.manual_seed(0)
    fused = cls(channels=4, cells_per_stage=1, fused=True, **kwargs)
    reference = cls(channels=4, cells_per_stage=1, fused=False, **kwargs)
    reference.load_state_dict(fused.state_dict())
    if channels_last:
        fused, reference = (m.to(memory_format=torch.channels_last) for m in (fused, reference))
    return fused, reference


def mask_sequence(space: str, steps: int = 4):
    """The masks of a search: all alive, then after each of `steps` shrink steps on random IIM tables."""
    gen = torch.Generator().manual_seed(1)
    spec = space_spec(space).load()
    mask = torch.ones(spec.num_edges, spec.num_ops)
    masks = [mask]
    for step in range(steps):
        table = torch.rand(mask.shape, generator=gen, dtype=torch.float64)
        mask = shrink_step(mask, table, spec.subsets, keep=spec.keep, steps=steps, step=step).mask
        masks.append(mask)
    return masks


def set_masks(model, mask):
    for kind in model.KINDS:
        model.set_mask(kind, mask)


def random_weights(model, gen):
    return {
        kind: torch.randn(*model.get_mask(kind).shape, generator=gen).softmax(-1).requires_grad_()
        for kind in model.KINDS
    }


def loss_and_grads(model, x, y, weights):
    model.zero_grad()
    logits = model(x, weights)[1]
    torch.nn.functional.cross_entropy(logits, y).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def iim_table(model, batches):
    tables = measure_iim(model, batches)
    assert tuple(tables) == model.KINDS
    return torch.stack([tables[kind] for kind in model.KINDS])


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_fused_cells_match_the_reference_for_every_mask(space, channels_last):
    fused, reference = twins(space, channels_last)
    size = 16 if space == "nb201" else 8
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(6, 3, size, size, generator=gen), torch.randint(0, 10, (6,), generator=gen)
    batches = [(x, y), (torch.randn(4, 3, size, size, generator=gen), y[:4])]
    masks = mask_sequence(space)
    assert masks[-1].sum() == (6 if space == "nb201" else 8)  # the last mask is the final cell
    for step, mask in enumerate(masks):
        set_masks(fused, mask)
        set_masks(reference, mask)
        for weights in (None, random_weights(fused, gen)):
            logits, grads = loss_and_grads(fused, x, y, weights)
            ref_logits, ref_grads = loss_and_grads(reference, x, y, weights)
            torch.testing.assert_close(logits, ref_logits, **TOL, msg=lambda m, s=step: f"logits, mask {s}: {m}")
            assert grads.keys() == ref_grads.keys()
            for name, grad in grads.items():
                torch.testing.assert_close(
                    grad, ref_grads[name], **TOL, msg=lambda m, n=name, s=step: f"{n}, mask {s}: {m}"
                )
        ours, ref = iim_table(fused, batches), iim_table(reference, batches)
        torch.testing.assert_close(
            ours, ref, rtol=1e-4, atol=0, equal_nan=True, msg=lambda m, s=step: f"IIM, mask {s}: {m}"
        )


def test_fused_path_runs_fewer_convolutions(monkeypatch):
    """The point of fusing: one conv per op kind and input node, not one per op."""
    calls = 0
    original = torch.nn.functional.conv2d

    def counting(*args, **kwargs):
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", counting)
    counts = {}
    for name, model in zip(("fused", "reference"), twins("nb201"), strict=True):
        calls = 0
        model(torch.randn(2, 3, 16, 16))
        counts[name] = calls
    # Per cell the reference runs 12 convs (6 edges x 1x1, 3x3); the fused cell 3 input nodes x 2 kinds plus
    # one pool sum per node (3). Stem (1) and two residual blocks (3 each) are the same in both.
    assert counts == {"reference": 7 + 3 * 12, "fused": 7 + 3 * 9}


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 7), (8, 6)])
@pytest.mark.parametrize("stride", [1, 2])
def test_fast_pool_and_dilated_depthwise_equal_the_torch_ops(size, stride):
    x = torch.randn(2, 6, *size)
    pool = torch.nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    torch.testing.assert_close(avg_pool_3x3(x, stride), pool(x), rtol=1e-6, atol=1e-6)
    for kernel in (3, 5):
        convs = [torch.nn.Conv2d(6, 6, kernel, stride, kernel - 1, dilation=2, groups=6, bias=False) for _ in range(2)]
        stacked = torch.cat([x, x.flip(1)], dim=1)
        expected = torch.cat([convs[0](x), convs[1](x.flip(1))], dim=1)
        torch.testing.assert_close(conv_stacked(stacked, convs), expected, rtol=1e-5, atol=1e-6)


def quick_cfg(space: str, method: str, fused: bool):
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    raw[space]["search"].update(C=4, N=1, fused_ops=fused, channels_last=False)
    if space == "darts" and method not in raw["darts"]["options"]:  # a method the quick profile runs on NB201 only
        raw["darts"]["options"][method] = raw["nb201"]["options"][method]
    params = params_from_dict(raw)
    return params.nb201.search(method) if space == "nb201" else params.darts.runs.search(method)


# The base spaces; their variants' fused cells are compared in tests/test_robust_spaces.py.
CASES = [(method, space) for method in sorted(METHODS) for space in METHODS[method].spaces
         if space in ("nb201", "darts")]


@pytest.mark.parametrize(("method", "space"), CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_one_training_step_of_every_method_matches_the_reference(space, method):
    gen = torch.Generator().manual_seed(3)
    size = 16 if space == "nb201" else 8
    batch = [torch.randn(8, 3, size, size, generator=gen), torch.randint(0, 10, (8,), generator=gen)]
    results = {}
    for fused in (True, False):
        cfg = quick_cfg(space, method, fused)
        torch.manual_seed(0)
        m = build_method(cfg, 10, torch.device("cpu"), torch.Generator().manual_seed(0))
        m.set_epoch(0)
        # The two supernets' construction may draw differently from the global stream; the steps' own draws
        # (P-DARTS's skip dropout) must then start from the same state.
        torch.manual_seed(1)
        step_batch = batch + batch if m.bilevel else batch
        for _ in range(2):
            m.train_step(*step_batch)
        results[fused] = {name: t.detach().clone() for name, t in m.state_dict()["model"].items()}
        results[fused].update(
            {f"method.{k}": v.detach().clone() for k, v in m.state_dict().items() if isinstance(v, torch.Tensor)}
        )
    assert results[True].keys() == results[False].keys()
    for name, value in results[True].items():
        torch.testing.assert_close(
            value, results[False][name], **TOL, msg=lambda m, n=name: f"{method} on {space}: {n}: {m}"
        )
