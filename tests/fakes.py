"""Synthetic CIFAR-10 in the original python format, for tests that must run without the real data."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np

from isdarts.data.cifar import BASE_FOLDER, CLASSES, META_FILE, TEST_FILES, TRAIN_FILES


def _fake_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Learnable images: a class colour plus a class stripe pattern, with noise and random shifts."""
    n = len(labels)
    colours = np.array(
        [[200, 60, 60], [60, 200, 60], [60, 60, 200], [200, 200, 60], [200, 60, 200],
         [60, 200, 200], [230, 140, 40], [120, 120, 120], [40, 140, 230], [140, 40, 230]],
        dtype=np.float32,
    )
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    # Stripe orientation and period depend on the class, so a tiny convnet can separate them.
    angle = labels[:, None, None] * (np.pi / 10)
    period = 4.0 + (labels[:, None, None] % 3) * 2.0
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    coord = xx * np.cos(angle) + yy * np.sin(angle)
    stripes = np.sin(2 * np.pi * coord / period + phase)  # (n, 32, 32)
    img = colours[labels][:, :, None, None] + 50.0 * stripes[:, None]
    img += rng.normal(0, 25.0, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _dump(obj: dict, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # protocol 2, as in the original Python-2 files


def write_fake_cifar10(root: Path, *, n_per_batch: int = 100, n_test: int = 100, seed: int = 0) -> Path:
    """Write synthetic CIFAR-10 in the original python format under ``root/cifar-10-batches-py``.

    For tests, smoke pipelines and benchmarks that must run without the real data. Returns the
    batches folder. Labels cycle over all ten classes, shuffled, so every class appears.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / BASE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    batches = [(name, n_per_batch, f"training batch {i + 1} of 5") for i, name in enumerate(TRAIN_FILES)]
    batches.append((TEST_FILES[0], n_test, "testing batch 1 of 1"))
    for name, n, label in batches:
        y = rng.permutation(np.arange(n) % 10)
        x = _fake_images(y, rng)
        _dump(
            {
                b"batch_label": label.encode(),
                b"labels": [int(v) for v in y],
                b"data": x.reshape(n, 3072),
                b"filenames": [f"{name}_{i:05d}.png".encode() for i in range(n)],
            },
            folder / name,
        )
    meta = {
        b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": n_per_batch, b"num_vis": 3072
    }
    _dump(meta, folder / META_FILE)
    return folder


class RecordingProbe:
    """An op probe that records which (cell, edge, op) outputs it was shown, and which as exact zeros."""

    def __init__(self) -> None:
        self.outputs_seen: Counter = Counter()
        self.zeros_seen: Counter = Counter()

    def outputs(self, cell, candidates, stacked) -> None:
        assert stacked.shape[1] in (1, len(candidates))
        self.outputs_seen.update((cell, e, o) for e, o in candidates)

    def zeros(self, cell, candidates, batch) -> None:
        self.zeros_seen.update((cell, e, o) for e, o in candidates)
