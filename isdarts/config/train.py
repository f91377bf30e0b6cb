"""Retraining and ImageNet-transfer settings: the trainers' configs and the params sections that build them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isdarts.config.fields import (
    build,
    fail,
    no_unknown,
    read_choice_int,
    read_int,
    read_int_or_all,
    read_typed_fields,
    required,
)
from isdarts.config.search import IMAGE_SIZES

BN_MODES = ("sync", "local", "frozen")


def check_schedule(cfg: Any, positive: tuple[str, ...], non_negative: tuple[str, ...]) -> None:
    """The range checks a retrain and an ImageNet run share; ValueError naming the field."""
    name = type(cfg).__name__
    for key in positive:
        if getattr(cfg, key) < 1:
            raise ValueError(f"{name}.{key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.layers < 3:
        raise ValueError(f"{name}.layers must be >= 3 (two reductions need them), got {cfg.layers}")
    if not 0 <= cfg.warmup_epochs < cfg.epochs:
        raise ValueError(f"{name}.warmup_epochs must be in [0, epochs={cfg.epochs}), got {cfg.warmup_epochs}")
    if not cfg.lr > 0:
        raise ValueError(f"{name}.lr must be > 0, got {cfg.lr}")
    if not 0 <= cfg.momentum < 1:
        raise ValueError(f"{name}.momentum must be in [0, 1), got {cfg.momentum}")
    if cfg.nesterov and cfg.momentum == 0:
        raise ValueError(f"{name}.nesterov needs momentum > 0")
    for key in non_negative:
        if getattr(cfg, key) < 0:
            raise ValueError(f"{name}.{key} must be >= 0, got {getattr(cfg, key)}")
    if not 0 <= cfg.drop_path_prob < 1:
        raise ValueError(f"{name}.drop_path_prob must be in [0, 1), got {cfg.drop_path_prob}")

@dataclass(frozen=True)
class RetrainConfig:
    """Hyperparameters of one evaluation run; `paper()` gives the spec §2 values."""

    C: int = 36
    layers: int = 20
    epochs: int = 600
    warmup_epochs: int = 5
    batch_size: int = 96
    lr: float = 0.025
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-4
    grad_clip: float = 0.0  # 0 = off; AutoDL's evaluation does not clip
    auxiliary_weight: float = 0.4  # 0 also drops the auxiliary head
    drop_path_prob: float = 0.2  # the value reached at the end of the linear ramp
    cutout: int = 16
    log_every: int = 50  # steps between NaN checks (each one is a host sync)

    def __post_init__(self) -> None:
        check_schedule(self, positive=("C", "epochs", "batch_size", "log_every"),
                       non_negative=("weight_decay", "grad_clip", "auxiliary_weight", "cutout"))

    @classmethod
    def paper(cls) -> RetrainConfig:
        """The CIFAR-10 evaluation settings of the official code (spec §2)."""
        return cls(
            C=36, layers=20, epochs=600, warmup_epochs=5, batch_size=96, lr=0.025, momentum=0.9, nesterov=True,
            weight_decay=3e-4, grad_clip=0.0, auxiliary_weight=0.4, drop_path_prob=0.2, cutout=16, log_every=50,
        )



@dataclass(frozen=True)
class ImagenetConfig:
    """Hyperparameters of one ImageNet run; `paper()` gives the spec §2 mobile-setting values."""

    C: int = 48
    layers: int = 14
    epochs: int = 250
    warmup_epochs: int = 5
    batch_size: int = 128  # global, split across ranks
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    label_smoothing: float = 0.1
    auxiliary_weight: float = 0.4  # 0 also drops the auxiliary head
    drop_path_prob: float = 0.0
    image_size: int = 224
    flops_size: int = 224  # MAdds are always reported at the paper's resolution
    augment: bool = True  # False trains on the deterministic test transform (tests, smoke runs)
    # sync: SyncBatchNorm under multi-GPU DDP (falls back to local on CPU, which lacks it);
    # frozen: BN uses running statistics, so a sample's output does not depend on its batch (equivalence tests).
    bn: str = "sync"
    workers: int = 4
    record_step_losses: bool = False  # per-step global losses in the history (tests; large for real runs)

    def __post_init__(self) -> None:
        check_schedule(self, positive=("C", "epochs", "batch_size", "image_size", "flops_size"),
                       non_negative=("weight_decay", "auxiliary_weight", "workers"))
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"ImagenetConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.bn not in BN_MODES:
            raise ValueError(f"ImagenetConfig.bn must be one of {BN_MODES}, got {self.bn!r}")

    @classmethod
    def paper(cls) -> ImagenetConfig:
        """The ImageNet mobile setting of the official code (spec §2)."""
        return cls(
            C=48, layers=14, epochs=250, warmup_epochs=5, batch_size=128, lr=0.1, momentum=0.9, nesterov=True,
            weight_decay=3e-5, label_smoothing=0.1, auxiliary_weight=0.4, drop_path_prob=0.0, image_size=224,
            augment=True, bn="sync",
        )



RETRAIN_KEYS = (
    "C", "layers", "epochs", "warmup_epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay",
    "grad_clip", "auxiliary_weight", "drop_path_prob", "cutout", "log_every",
)
IMAGENET_KEYS = (
    "C", "layers", "epochs", "warmup_epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay",
    "label_smoothing", "auxiliary_weight", "drop_path_prob", "image_size", "flops_size", "augment", "bn", "workers",
)


@dataclass(frozen=True)
class RetrainParams:
    """CIFAR-10 evaluation of a searched cell (spec §2): the trainer's settings plus the data it sees."""

    train: RetrainConfig
    image_size: int
    train_images: int | None
    test_images: int | None

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> RetrainParams:
        no_unknown(d, prefix, set(RETRAIN_KEYS) | {"image_size", "train_images", "test_images"})
        cfg = build(RetrainConfig, read_typed_fields(RetrainConfig, d, prefix, RETRAIN_KEYS), prefix)
        return cls(cfg, read_choice_int(d, "image_size", prefix, IMAGE_SIZES),
                   read_int_or_all(d, "train_images", prefix), read_int_or_all(d, "test_images", prefix))

    def mismatches(self) -> list[str]:
        paper = RetrainConfig.paper()
        diffs = [f"retrain.{k}={getattr(self.train, k)!r} (paper: {getattr(paper, k)!r})"
                 for k in RETRAIN_KEYS if k != "log_every" and getattr(self.train, k) != getattr(paper, k)]
        if self.image_size != 32:
            diffs.append(f"retrain.image_size={self.image_size} (paper: 32)")
        if self.train_images is not None or self.test_images is not None:
            diffs.append("retrain: a subset of the CIFAR-10 images (paper: all)")
        return diffs


@dataclass(frozen=True)
class ImagenetParams:
    """ImageNet transfer (spec §2 mobile setting); root None trains on a tiny ImageFolder made from CIFAR."""

    root: Path | None
    tiny_train_per_class: int
    tiny_val_per_class: int
    train: ImagenetConfig

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> ImagenetParams:
        no_unknown(d, prefix, set(IMAGENET_KEYS) | {"root", "tiny_train_per_class", "tiny_val_per_class"})
        root = required(d, "root", prefix)
        if root is not None and (not isinstance(root, str) or not root):
            raise fail(prefix + "root", root, "a path (string) to an ImageFolder tree, or null")
        cfg = build(ImagenetConfig, read_typed_fields(ImagenetConfig, d, prefix, IMAGENET_KEYS), prefix)
        return cls(Path(root) if root else None, read_int(d, "tiny_train_per_class", prefix, minimum=1),
                   read_int(d, "tiny_val_per_class", prefix, minimum=1), cfg)

    def mismatches(self) -> list[str]:
        paper = ImagenetConfig.paper()
        skip = {"workers", "bn"}
        diffs = [f"imagenet.{k}={getattr(self.train, k)!r} (paper: {getattr(paper, k)!r})"
                 for k in IMAGENET_KEYS if k not in skip and getattr(self.train, k) != getattr(paper, k)]
        if self.root is None:
            diffs.append("imagenet: a tiny ImageFolder made from CIFAR-10 (paper: ImageNet-1k)")
        return diffs

