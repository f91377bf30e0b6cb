"""The image datasets a search or retraining can run on, and what each one is normalised with.

One row per dataset: the name the CLI, the paths and the manifests use, the label messages and model
cards show, the per-channel statistics its device-resident batches are normalised with, and the params
key that says where its raw files live. Kept free of torch and of the loaders, so the loaders, the
prepared-data reader and the pipeline can all read it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from isdarts.errors import ConfigError

# CIFAR-10 statistics as AutoDL (the IS-DARTS code base) writes them.
CIFAR10_MEAN = tuple(v / 255 for v in (125.3, 123.0, 113.9))
CIFAR10_STD = tuple(v / 255 for v in (63.0, 62.1, 66.7))
# Per-channel statistics of the CIFAR-100 training images, as AutoDL-Projects (the IS-DARTS / NAS-Bench-201
# code base, xautodl/datasets/get_dataset_with_transform.py) writes them, beside the CIFAR-10 ones above.
CIFAR100_MEAN = tuple(v / 255 for v in (129.3, 124.1, 112.4))
CIFAR100_STD = tuple(v / 255 for v in (68.2, 65.4, 70.4))
# Per-channel statistics of the SVHN training images as RobustDARTS (Zela et al., ICLR 2020; the DARTS-space
# SVHN searches later DARTS variants follow) writes them in src/utils.py, _data_transforms_svhn.
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)

DEFAULT_DATASET = "cifar10"


@dataclass(frozen=True)
class DatasetInfo:
    """What the pipeline needs to know about one dataset besides its images."""

    name: str  # "cifar100": the CLI's --dataset value, the manifest's "dataset", the folder suffix
    label: str  # "CIFAR-100": in messages, model cards and paper-mismatch notes
    mean: tuple[float, ...]  # per-channel mean of the training images, in [0, 1]
    std: tuple[float, ...]
    root_key: str  # the params.yaml key that holds its raw files' folder

    def prepare_command(self, *, force: bool = False) -> str:
        """The command that (re)builds its prepared copy, for error messages; `force`: even when DVC sees no
        change (raw files put in place by hand are no DVC dependency)."""
        if self.name == DEFAULT_DATASET:  # the pipeline's own stage, as before the other datasets existed
            return "dvc repro -f prepare_data" if force else "dvc repro prepare_data"
        return f"isdarts prepare-data --dataset {self.name}"  # prepares afresh every time


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType({
    "cifar10": DatasetInfo("cifar10", "CIFAR-10", CIFAR10_MEAN, CIFAR10_STD, "data.cifar10_root"),
    "cifar100": DatasetInfo("cifar100", "CIFAR-100", CIFAR100_MEAN, CIFAR100_STD, "data.cifar100_root"),
    "svhn": DatasetInfo("svhn", "SVHN", SVHN_MEAN, SVHN_STD, "data.svhn_root"),
})


def dataset_info(name: str) -> DatasetInfo:
    """The row of `name`; an unknown name is a ConfigError listing the known ones."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None
