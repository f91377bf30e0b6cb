"""CIFAR batches served from device memory, with augmentation done batched on the device.

The whole dataset stays on the device as uint8 (150 MB for CIFAR-10's train split), so a batch
costs an index, one gather for crop+flip, a fused normalise and an optional cutout mask: no
worker processes, no per-image Python, no host-to-device copy per step (airbench's recipe).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

# The CIFAR-10 statistics (AutoDL's) stay importable from here; every dataset's live in isdarts.data.datasets.
from isdarts.data.datasets import CIFAR10_MEAN, CIFAR10_STD

PAD = 4  # RandomCrop(32, padding=4)


class DeviceImages:
    """uint8 images (N, 3, H, W) and int64 labels kept on one device, batched with on-device augmentation.

    `mean`/`std` default to CIFAR-10's; the search loop and retraining always pass the prepared data's own.
    """

    def __init__(
        self,
        x_uint8: np.ndarray | Tensor,
        y: np.ndarray | Tensor | Sequence[int],
        device: torch.device | str,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ) -> None:
        self.device = torch.device(device)
        self.x = torch.as_tensor(x_uint8).to(self.device, torch.uint8).contiguous()
        self.y = torch.as_tensor(y).to(self.device, torch.int64)
        if self.x.ndim != 4 or self.x.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W) uint8, got {tuple(self.x.shape)}")
        if len(self.y) != len(self.x):
            raise ValueError(f"{len(self.x)} images but {len(self.y)} labels")
        self._mean, self._std = tuple(mean), tuple(std)
        # Normalising (x/255 - mean) / std folded into one multiply-add.
        std_t = torch.tensor(self._std, device=self.device).view(1, 3, 1, 1)
        mean_t = torch.tensor(self._mean, device=self.device).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -mean_t / std_t

    def __len__(self) -> int:
        return len(self.x)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> DeviceImages:
        """A new DeviceImages with the given rows (in the given order), e.g. for a hold-out split."""
        idx = torch.as_tensor(indices).to(self.device, torch.long)
        return DeviceImages(self.x[idx], self.y[idx], self.device, self._mean, self._std)

    def split(self, n_holdout: int, generator: torch.Generator) -> tuple[DeviceImages, DeviceImages]:
        """Random disjoint (train, holdout) parts, each in dataset order so shuffle=False stays meaningful."""
        if not 0 <= n_holdout <= len(self):
            raise ValueError(f"n_holdout={n_holdout} outside 0..{len(self)}")
        perm = torch.randperm(len(self), generator=generator, device=generator.device)
        holdout, train = perm[:n_holdout].sort().values, perm[n_holdout:].sort().values
        return self.subset(train), self.subset(holdout)

    def sample(self, batch_size: int, *, augment: bool, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """One batch drawn uniformly WITH replacement (AutoDL pairs each train image with a random valid one)."""
        idx = torch.randint(0, len(self), (batch_size,), generator=generator, device=self.device)
        xb = self.x[idx]
        if augment:
            xb = self._crop_flip(xb, generator)
        return self.normalise(xb), self.y[idx]

    def normalise(self, x_uint8: Tensor) -> Tensor:
        """uint8 (B, 3, H, W) -> float32 normalised with this dataset's mean/std."""
        return x_uint8.float().mul_(self._scale).add_(self._shift)

    def batches(
        self,
        batch_size: int,
        *,
        augment: bool,
        shuffle: bool,
        generator: torch.Generator | None,
        drop_last: bool = False,
        cutout: int = 0,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (float32 normalised images, int64 labels) batches for one epoch.

        ``augment``: random 32-crop of the 4-pixel zero-padded image and horizontal flip (p=0.5),
        then, if ``cutout`` > 0, a DARTS-style cutout square. ``shuffle=False`` keeps dataset
        order (as the IS-DARTS code does). All randomness comes from ``generator``, in a fixed
        order, so saving and restoring ``generator.get_state()`` replays an epoch exactly.
        """
        if cutout and not augment:
            raise ValueError("cutout is an augmentation: pass augment=True or cutout=0")
        if generator is not None and generator.device.type != self.device.type:
            raise ValueError(f"generator is on {generator.device} but the data is on {self.device}")
        n = len(self)
        order = torch.randperm(n, generator=generator, device=self.device) if shuffle else None
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            end = min(start + batch_size, n)
            if order is None:
                xb, yb = self.x[start:end], self.y[start:end]
            else:
                idx = order[start:end]
                xb, yb = self.x[idx], self.y[idx]
            if augment:
                xb = self._crop_flip(xb, generator)
            out = self.normalise(xb)
            if cutout:
                out = self._cutout(out, cutout, generator)
            yield out, yb

    def _crop_flip(self, xb: Tensor, generator: torch.Generator | None) -> Tensor:
        """Random crop of the zero-padded batch plus horizontal flip, as one advanced-index gather."""
        b, _, h, w = xb.shape
        padded = torch.nn.functional.pad(xb, (PAD, PAD, PAD, PAD))  # uint8 zeros, like RandomCrop(padding=4)
        dev = xb.device
        dy = torch.randint(0, 2 * PAD + 1, (b,), device=dev, generator=generator)
        dx = torch.randint(0, 2 * PAD + 1, (b,), device=dev, generator=generator)
        flip = torch.rand(b, device=dev, generator=generator) < 0.5
        ar_h = torch.arange(h, device=dev)
        ar_w = torch.arange(w, device=dev)
        rows = dy[:, None] + ar_h  # (B, H)
        # A flipped crop reads the same window right-to-left.
        cols = dx[:, None] + torch.where(flip[:, None], w - 1 - ar_w, ar_w)  # (B, W)
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(3, device=dev)[None, :, None, None]
        return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]

    @staticmethod
    def _cutout(x: Tensor, length: int, generator: torch.Generator | None) -> Tensor:
        """Zero a length x length square (clipped at the borders) per image, after normalisation (DARTS)."""
        b, _, h, w = x.shape
        dev = x.device
        cy = torch.randint(0, h, (b, 1), device=dev, generator=generator)
        cx = torch.randint(0, w, (b, 1), device=dev, generator=generator)
        half = length // 2
        ar_h = torch.arange(h, device=dev)
        ar_w = torch.arange(w, device=dev)
        in_rows = (ar_h >= cy - half) & (ar_h < cy + half)  # (B, H)
        in_cols = (ar_w >= cx - half) & (ar_w < cx + half)  # (B, W)
        mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]
        return x.masked_fill_(mask, 0.0)
