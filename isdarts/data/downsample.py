"""Smaller CIFAR for CPU-sized runs: the first N images of each split, downsampled by exact area averaging.

Quick profiles retrain on 16x16 images (a quarter of the pixels, so about a quarter of the compute) and on a
prefix of each split; the result is deterministic, so a resumed run sees the same images as the first one.
"""

from __future__ import annotations

import numpy as np

from isdarts.data.cifar import CifarArrays

SOURCE_SIZE = 32
ALLOWED_SIZES = tuple(s for s in range(1, SOURCE_SIZE + 1) if SOURCE_SIZE % s == 0)  # 1, 2, 4, 8, 16, 32


def _first(x: np.ndarray, y: np.ndarray, n: int | None, key: str) -> tuple[np.ndarray, np.ndarray]:
    if n is None:
        return x, y
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{key} must be a positive number of images or null (all), got {n!r}")
    if n > len(x):
        raise ValueError(f"{key} = {n} but the split holds only {len(x)} images; lower {key} or set it to null (all)")
    return x[:n], y[:n]


def check_image_size(image_size: int) -> None:
    if isinstance(image_size, bool) or image_size not in ALLOWED_SIZES:
        raise ValueError(
            f"image_size = {image_size!r} must divide {SOURCE_SIZE} evenly; allowed values: "
            f"{', '.join(map(str, ALLOWED_SIZES))}"
        )


def area_downsample(x: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 (N, C, 32, 32) -> (N, C, s, s): each output pixel is the mean of its f x f block, rounded half up.

    Integer arithmetic, so the result is exact and the same on every machine.
    """
    check_image_size(image_size)
    if x.ndim != 4 or x.shape[2:] != (SOURCE_SIZE, SOURCE_SIZE):
        raise ValueError(f"images must be (N, C, {SOURCE_SIZE}, {SOURCE_SIZE}), got {x.shape}")
    if image_size == SOURCE_SIZE:
        return x
    f = SOURCE_SIZE // image_size
    n, c = x.shape[:2]
    sums = x.reshape(n, c, image_size, f, image_size, f).sum(axis=(3, 5), dtype=np.int64)
    area = f * f
    return ((sums + area // 2) // area).astype(np.uint8)


def reduce_cifar(
    arrays: CifarArrays, *, image_size: int, train_images: int | None, test_images: int | None
) -> CifarArrays:
    """The first `train_images` / `test_images` of each split (None = all), downsampled to `image_size`.

    Images keep their stored order; image_size 32 leaves the pixels untouched. The result keeps the dataset's
    name and normalisation statistics (the images' statistics stay those of the full dataset, as in training).
    """
    check_image_size(image_size)
    train_x, train_y = _first(arrays.train_x, arrays.train_y, train_images, "train_images")
    test_x, test_y = _first(arrays.test_x, arrays.test_y, test_images, "test_images")
    return CifarArrays(
        train_x=area_downsample(train_x, image_size),
        train_y=train_y,
        test_x=area_downsample(test_x, image_size),
        test_y=test_y,
        classes=list(arrays.classes),
        dataset=arrays.dataset,
        mean=arrays.mean,
        std=arrays.std,
    )
