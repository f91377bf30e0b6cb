"""Datasets: locate and verify CIFAR-10, CIFAR-100 and SVHN, load them, and serve device-resident augmented batches."""

from isdarts.data.cifar import (
    CifarArrays,
    CifarSource,
    load_cifar10,
    load_prepared,
    locate_cifar10,
    save_prepared,
)
from isdarts.data.datasets import DATASETS, DEFAULT_DATASET, DatasetInfo, dataset_info
from isdarts.data.device_loader import CIFAR10_MEAN, CIFAR10_STD, DeviceImages

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "DEFAULT_DATASET",
    "CifarArrays",
    "CifarSource",
    "DatasetInfo",
    "DeviceImages",
    "dataset_info",
    "load_cifar10",
    "load_prepared",
    "locate_cifar10",
    "save_prepared",
]
