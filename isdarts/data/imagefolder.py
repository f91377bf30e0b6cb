"""ImageNet-style ImageFolder trees: a cheap layout check, a tiny synthetic tree, the paper's transforms, and
a resumable epoch order with per-sample augmentation seeds.

The check counts files but never hashes them: hashing 1.28M ImageNet JPEGs would take longer than an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

if TYPE_CHECKING:
    from torchvision import transforms

from isdarts.data.cifar import DataError

LAYOUT = "<root>/train/<class>/*.JPEG and <root>/val/<class>/* (one folder per class in each split)"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# AlexNet's PCA of ImageNet RGB pixels (Krizhevsky et al. 2012), as used by DARTS and AutoDL.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _split_counts(split: Path) -> dict[str, int]:
    classes = sorted(p for p in split.iterdir() if p.is_dir())
    return {c.name: sum(1 for f in c.iterdir() if _is_image(f)) for c in classes}


def check_imagefolder(root: str | Path, *, split_dirs: Sequence[str] = ("train", "val")) -> dict[str, Any]:
    """Manifest of an ImageFolder tree (classes, per-class counts per split, total); DataError if malformed."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"ImageFolder root {root} does not exist or is not a folder; expected {LAYOUT}")
    if not any(root.iterdir()):
        raise DataError(f"ImageFolder root {root} is empty; expected {LAYOUT}")
    counts: dict[str, dict[str, int]] = {}
    for name in split_dirs:
        split = root / name
        if not split.is_dir():
            raise DataError(f"{split} is missing: {root} is not an ImageFolder tree; expected {LAYOUT}")
        per_class = _split_counts(split)
        if not per_class:
            raise DataError(f"{split} has no class folders; expected {LAYOUT}")
        empty = [c for c, n in per_class.items() if n == 0]
        if empty:
            raise DataError(f"{split} has class folders without images ({', '.join(empty[:5])}); expected {LAYOUT}")
        counts[name] = per_class
    first, *rest = split_dirs
    for name in rest:
        only_a = sorted(set(counts[first]) - set(counts[name]))
        only_b = sorted(set(counts[name]) - set(counts[first]))
        if only_a or only_b:
            raise DataError(
                f"{root}: the class folders of {first}/ and {name}/ differ (only in {first}: {only_a[:5]}, "
                f"only in {name}: {only_b[:5]}); both splits need the same classes, {LAYOUT}"
            )
    return {
        "root": str(root),
        "classes": sorted(counts[first]),
        "counts": counts,
        "split_totals": {name: sum(c.values()) for name, c in counts.items()},
        "total": sum(sum(c.values()) for c in counts.values()),
    }


def make_tiny_imagefolder(
    root: str | Path, arrays_x_uint8: np.ndarray, labels: np.ndarray, classes: Sequence[str], per_class: int,
    *, split: str = "train",
) -> Path:
    """Write the first `per_class` images of each class (N x 3 x H x W uint8) as PNGs under `root/split/<class>/`.

    Real pixels in a real ImageFolder tree, so the quick profile and tests exercise the same loader as ImageNet.
    """
    from PIL import Image  # only the tiny tree writes images; reading goes through torchvision

    out = Path(root) / split
    labels = np.asarray(labels)
    for k, name in enumerate(classes):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        idx = np.flatnonzero(labels == k)[:per_class]
        if len(idx) < per_class:
            raise DataError(f"class {name!r} has {len(idx)} images, fewer than per_class={per_class}")
        for j, i in enumerate(idx):
            Image.fromarray(np.ascontiguousarray(arrays_x_uint8[i].transpose(1, 2, 0))).save(folder / f"{j:05d}.png")
    return out


class Lighting:
    """AlexNet-style PCA colour noise on a [0, 1] CHW tensor: adds eigvec @ (alpha * eigval), alpha ~ N(0, std)."""

    def __init__(self, std: float = 0.1) -> None:
        self.std = std
        self.eigval = torch.tensor(IMAGENET_EIGVAL)
        self.eigvec = torch.tensor(IMAGENET_EIGVEC)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return img
        alpha = torch.randn(3) * self.std
        rgb = self.eigvec @ (alpha * self.eigval)
        return img + rgb.view(3, 1, 1).to(img.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(std={self.std})"


def imagenet_transforms(train: bool, size: int = 224) -> transforms.Compose:
    """The paper's ImageNet pipeline (spec §2): augmentation for training, resize + centre crop for testing."""
    # Imported here: torchvision's import pulls in torch._dynamo (about 2 s), which every pipeline stage paid
    # through the command line although only the ImageNet transfer needs it.
    from torchvision import transforms

    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if train:
        return transforms.Compose([
            transforms.RandomResizedCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2),
            transforms.ToTensor(),
            Lighting(0.1),
            normalize,
        ])
    return transforms.Compose([
        transforms.Resize(size * 256 // 224),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        normalize,
    ])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation in one epoch: a function of the run's seed, the epoch and the
    image, so it does not depend on which worker process or rank loads the image, or on where a run resumed."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


class SeededImages(Dataset):
    """A dataset indexed by (epoch, index) keys whose random transforms draw from `sample_seed`.

    The torch random stream of the loading process is left as it was (a forked stream), so loading in the
    main process (workers=0) does not shift the draws of drop path. The transforms must draw from torch's
    stream only, as torchvision's and `Lighting` do.
    """

    def __init__(self, images: Dataset, seed: int) -> None:
        self.images, self.seed = images, seed

    def __len__(self) -> int:
        return len(self.images)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with torch.random.fork_rng(devices=()):
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            return self.images[index]


class ResumableOrder(Sampler[tuple[int, int]]):
    """This rank's share of one epoch (`shard`'s order) as the (epoch, index) keys of `SeededImages`.

    `set_epoch(epoch, skip)` starts the epoch `skip` samples in: a run resumed inside an epoch loads exactly
    the images an uninterrupted run loads next, with the same augmentation. The length stays the whole
    epoch's, so step numbers keep counting from the epoch's start.
    """

    def __init__(self, shard: DistributedSampler) -> None:
        self.shard = shard
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.shard.set_epoch(epoch)
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i, index in enumerate(self.shard):
            if i >= self.skip:
                yield self.epoch, index

    def __len__(self) -> int:
        return len(self.shard)
