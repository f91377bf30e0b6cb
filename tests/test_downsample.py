"""reduce_cifar: the first N images of each split, exact area averaging to smaller images, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from isdarts.data.cifar import CLASSES, CifarArrays
from isdarts.data.downsample import ALLOWED_SIZES, area_downsample, reduce_cifar


def _arrays(n_train: int = 7, n_test: int = 5, seed: int = 0) -> CifarArrays:
    rng = np.random.default_rng(seed)
    return CifarArrays(
        train_x=rng.integers(0, 256, size=(n_train, 3, 32, 32), dtype=np.uint8),
        train_y=rng.integers(0, 10, size=n_train).astype(np.int64),
        test_x=rng.integers(0, 256, size=(n_test, 3, 32, 32), dtype=np.uint8),
        test_y=rng.integers(0, 10, size=n_test).astype(np.int64),
    )


def _reference(x: np.ndarray, size: int) -> np.ndarray:
    """Float block means, rounded half up: what the integer implementation must reproduce exactly."""
    f = 32 // size
    means = x.astype(np.float64).reshape(len(x), 3, size, f, size, f).mean(axis=(3, 5))
    return np.floor(means + 0.5).astype(np.uint8)


@pytest.mark.parametrize("size", [1, 2, 4, 8, 16])
def test_area_average_matches_numpy_reference(size: int) -> None:
    data = _arrays()
    out = reduce_cifar(data, image_size=size, train_images=None, test_images=None)
    assert out.train_x.shape == (7, 3, size, size) and out.train_x.dtype == np.uint8
    np.testing.assert_array_equal(out.train_x, _reference(data.train_x, size))
    np.testing.assert_array_equal(out.test_x, _reference(data.test_x, size))
    np.testing.assert_array_equal(out.train_y, data.train_y)
    again = reduce_cifar(data, image_size=size, train_images=None, test_images=None)
    np.testing.assert_array_equal(again.train_x, out.train_x)


def test_rounding_of_block_means_is_half_up() -> None:
    x = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    x[0, 0, 0, :2] = [255, 0]  # block (0, 0) of channel 0 at size 16: 255, 0, 0, 0 -> 63.75 -> 64
    x[0, 0, 0, 2:4] = [1, 1]  # block (0, 1): 1, 1, 0, 0 -> 0.5 -> 1
    x[0, 0, 0, 4] = 1  # block (0, 2): 1, 0, 0, 0 -> 0.25 -> 0
    out = area_downsample(x, 16)
    assert out[0, 0, 0, :3].tolist() == [64, 1, 0]
    assert area_downsample(np.full((1, 3, 32, 32), 255, dtype=np.uint8), 1).tolist() == [[[[255]]] * 3]


def test_keeps_first_images_in_order_and_32_is_unchanged() -> None:
    data = _arrays()
    out = reduce_cifar(data, image_size=32, train_images=4, test_images=2)
    np.testing.assert_array_equal(out.train_x, data.train_x[:4])
    np.testing.assert_array_equal(out.train_y, data.train_y[:4])
    np.testing.assert_array_equal(out.test_x, data.test_x[:2])
    np.testing.assert_array_equal(out.test_y, data.test_y[:2])
    assert out.classes == list(CLASSES)
    small = reduce_cifar(data, image_size=8, train_images=3, test_images=None)
    np.testing.assert_array_equal(small.train_x, _reference(data.train_x[:3], 8))
    assert len(small.test_x) == 5


@pytest.mark.parametrize("size", [0, 3, 5, 12, 64])
def test_image_size_must_divide_32(size: int) -> None:
    with pytest.raises(ValueError, match=rf"image_size = {size} .*allowed values: 1, 2, 4, 8, 16, 32"):
        reduce_cifar(_arrays(), image_size=size, train_images=None, test_images=None)
    assert ALLOWED_SIZES == (1, 2, 4, 8, 16, 32)


def test_image_counts_are_checked() -> None:
    data = _arrays(n_train=7, n_test=5)
    with pytest.raises(ValueError, match=r"train_images = 8 but the split holds only 7 images"):
        reduce_cifar(data, image_size=16, train_images=8, test_images=None)
    with pytest.raises(ValueError, match=r"test_images = 6 but the split holds only 5 images"):
        reduce_cifar(data, image_size=16, train_images=None, test_images=6)
    with pytest.raises(ValueError, match=r"train_images must be a positive number"):
        reduce_cifar(data, image_size=16, train_images=0, test_images=None)
