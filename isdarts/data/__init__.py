"""Datasets: locate and verify CIFAR-10, load it, and serve device-resident augmented batches."""

from isdarts.data.cifar import (
    CifarArrays,
    CifarSource,
    load_cifar10,
    load_prepared,
    locate_cifar10,
    save_prepared,
)
from isdarts.data.device_loader import CIFAR10_MEAN, CIFAR10_STD, DeviceImages

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CifarArrays",
    "CifarSource",
    "DeviceImages",
    "load_cifar10",
    "load_prepared",
    "locate_cifar10",
    "save_prepared",
]
