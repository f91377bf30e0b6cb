"""isdarts.data.device_loader: batched on-device crop, flip, cutout and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isdarts.data.device_loader import CIFAR10_MEAN, CIFAR10_STD, DeviceImages

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")],
    ),
]
MEAN = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def _normalise(x_uint8: torch.Tensor) -> torch.Tensor:
    return (x_uint8.float() / 255 - MEAN) / STD


def _one_batch(data: DeviceImages, seed: int, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    gen = make_generator(seed, data.device)
    ((x, y),) = data.batches(len(data), generator=gen, **kwargs)
    return x.cpu(), y.cpu()


def test_normalisation_constants_and_values() -> None:
    assert np.allclose(np.array(CIFAR10_MEAN) * 255, [125.3, 123.0, 113.9])
    assert np.allclose(np.array(CIFAR10_STD) * 255, [63.0, 62.1, 66.7])
    x = _random_images(10)
    data = DeviceImages(x, np.arange(10), "cpu")
    out, y = _one_batch(data, 0, augment=False, shuffle=False)
    assert out.dtype == torch.float32 and out.shape == (10, 3, 32, 32)
    torch.testing.assert_close(out, _normalise(torch.from_numpy(x)), rtol=0, atol=1e-5)
    assert y.tolist() == list(range(10))


@pytest.mark.parametrize("device", DEVICES)
def test_crop_and_flip_match_zero_padded_slices(device: str) -> None:
    """Every output is exactly one (dy, dx, flip) window of the zero-padded image; all offsets occur."""
    n = 256
    x = torch.from_numpy(_random_images(n))
    out, _ = _one_batch(DeviceImages(x, np.zeros(n), device), 1, augment=True, shuffle=False)
    padded = _normalise(torch.nn.functional.pad(x, (4, 4, 4, 4)))  # pad uint8 with 0, then normalise
    found = torch.zeros(n, dtype=torch.long)
    dys, dxs, flips = torch.full((n,), -1), torch.full((n,), -1), torch.full((n,), -1)
    for dy in range(9):
        for dx in range(9):
            window = padded[:, :, dy : dy + 32, dx : dx + 32]
            for flip, candidate in ((0, window), (1, window.flip(3))):
                hit = (candidate - out).abs().amax(dim=(1, 2, 3)) < 1e-5
                found += hit
                dys[hit], dxs[hit], flips[hit] = dy, dx, flip
    assert (found == 1).all(), "each output must match exactly one window of the padded image"
    assert set(dys.tolist()) == set(range(9)) and set(dxs.tolist()) == set(range(9))
    assert 0.35 < flips.float().mean() < 0.65
    # Padding is 0 in uint8, so after normalisation it reads -mean/std.
    top = out[dys == 0][:, :, 0, :]
    torch.testing.assert_close(top, (-MEAN / STD).view(1, 3, 1).expand_as(top), rtol=0, atol=1e-5)


def test_flip_reverses_columns() -> None:
    """With no room to shift (an image that is one colour per column), only flips change the output."""
    cols = torch.arange(32, dtype=torch.uint8).mul(7).view(1, 1, 1, 32).expand(64, 3, 32, 32)
    out, _ = _one_batch(DeviceImages(cols, np.zeros(64), "cpu"), 2, augment=True, shuffle=False)
    middle = out[:, 0, 16, 8:24]  # columns inside the image for every dx
    increasing = (middle.diff(dim=1) > 0).all(dim=1)
    decreasing = (middle.diff(dim=1) < 0).all(dim=1)
    assert (increasing ^ decreasing).all() and increasing.any() and decreasing.any()


@pytest.mark.parametrize("length", [8, 16])
def test_cutout_zeroes_a_clipped_square(length: int) -> None:
    n = 200
    data = DeviceImages(_random_images(n), np.zeros(n), "cpu")
    plain, _ = _one_batch(data, 3, augment=True, shuffle=False)
    cut, _ = _one_batch(data, 3, augment=True, shuffle=False, cutout=length)
    zero = cut == 0  # normalised pixels are never exactly 0, so zeros are the cutout mask
    assert (zero == zero[:, :1]).all(), "cutout covers all channels"
    mask = zero[:, 0]
    rows, cols = mask.any(dim=2), mask.any(dim=1)
    assert torch.equal(mask, rows[:, :, None] & cols[:, None, :]), "mask is a rectangle"
    assert (rows.sum(1) <= length).all() and (cols.sum(1) <= length).all()
    assert ((rows.sum(1) == length) & (cols.sum(1) == length)).float().mean() > 0.2  # unclipped ones
    assert torch.equal(cut[~zero], plain[~zero]), "only the square changes"
    with pytest.raises(ValueError, match="cutout"):
        next(data.batches(8, augment=False, shuffle=False, generator=None, cutout=8))


def test_same_generator_state_replays_an_epoch() -> None:
    data = DeviceImages(_random_images(50), np.arange(50), "cpu")
    gen = make_generator(7, "cpu")
    kwargs = {"augment": True, "shuffle": True, "generator": gen, "cutout": 16}
    list(data.batches(16, **kwargs))  # advance past the first epoch, as a resumed run would
    state = gen.get_state()
    first = list(data.batches(16, **kwargs))
    gen.set_state(state)
    again = list(data.batches(16, **kwargs))
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    other = list(data.batches(16, **kwargs))
    assert not torch.equal(other[0][0], first[0][0])


def test_shuffle_is_a_permutation_and_no_shuffle_keeps_order() -> None:
    n = 103
    data = DeviceImages(_random_images(n), np.arange(n), "cpu")
    gen = make_generator(0, "cpu")
    ys = torch.cat([y for _, y in data.batches(10, augment=False, shuffle=True, generator=gen)])
    assert sorted(ys.tolist()) == list(range(n)) and ys.tolist() != list(range(n))
    ys = torch.cat([y for _, y in data.batches(10, augment=True, shuffle=False, generator=gen)])
    assert ys.tolist() == list(range(n))

    sizes = [len(y) for _, y in data.batches(10, augment=False, shuffle=True, generator=gen, drop_last=True)]
    assert sizes == [10] * 10 == [10] * data.num_batches(10, drop_last=True)
    assert data.num_batches(10) == 11 and len(data) == n


def test_subset_and_split() -> None:
    n = 60
    data = DeviceImages(_random_images(n), np.arange(n), "cpu")
    sub = data.subset([5, 2, 9])
    assert sub.y.tolist() == [5, 2, 9] and torch.equal(sub.x[1], data.x[2])

    train, holdout = data.split(20, make_generator(0, "cpu"))
    t, h = train.y.tolist(), holdout.y.tolist()
    assert len(t) == 40 and len(h) == 20
    assert set(t).isdisjoint(h) and set(t) | set(h) == set(range(n))
    assert t == sorted(t) and h == sorted(h)  # dataset order is kept inside each part
    again = data.split(20, make_generator(0, "cpu"))[1].y.tolist()
    assert again == h
    with pytest.raises(ValueError):
        data.split(n + 1, make_generator(0, "cpu"))


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="N, 3, H, W"):
        DeviceImages(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4), "cpu")
    with pytest.raises(ValueError, match="labels"):
        DeviceImages(np.zeros((4, 3, 32, 32), np.uint8), np.zeros(3), "cpu")
