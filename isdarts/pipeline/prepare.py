"""The prepare_data stage: locate (or download) a dataset, verify it, and store it for every later stage.

CIFAR-10 goes to data/prepared as it always did; CIFAR-100 and SVHN to data/prepared-<dataset>
(isdarts.pipeline.layout). The manifest names the dataset and its normalisation statistics, which the search
and retraining read back instead of assuming CIFAR-10's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from isdarts.config import Params
from isdarts.data.cifar import CifarArrays, CifarSource, load_cifar10, locate_cifar10, save_prepared
from isdarts.data.cifar100 import load_cifar100, locate_cifar100
from isdarts.data.datasets import DEFAULT_DATASET, dataset_info
from isdarts.data.svhn import load_svhn, locate_svhn
from isdarts.errors import ConfigError
from isdarts.pipeline.layout import prepared_dir

log = logging.getLogger(__name__)


def prepare_data(
    params: Params, out_dir: Path | None = None, *, dataset: str = DEFAULT_DATASET, svhn_extra: bool = False
) -> dict[str, Any]:
    """Store `dataset` as one uint8 array file with a manifest (default folder: layout.prepared_dir); returns the
    manifest. Profile 'paper' refuses anything but the full, verified dataset.

    CIFAR-100 and SVHN files that differ from the official md5s are accepted, as a "subset" the manifest and
    every result flag, by any profile but 'paper' (their small test copies are such files). `svhn_extra` appends
    SVHN's 531k "extra" images to its training split; the default is the usual NAS setting, train only.
    """
    info = dataset_info(dataset)
    if svhn_extra and info.name != "svhn":
        raise ConfigError(f"--svhn-extra applies to SVHN only, not {info.label}")
    source, arrays = _locate_and_load(params, info.name, svhn_extra)
    if source.kind != "full":
        log.warning("%s", source.note)
    if params.profile == "paper" and not (source.kind == "full" and source.verified):
        raise ConfigError(
            f"params.yaml: profile 'paper' needs the full, verified {info.label}, but found: {source.note}"
        )
    return save_prepared(arrays, source.as_dict(), Path(out_dir or prepared_dir(info.name)))


def _locate_and_load(params: Params, dataset: str, svhn_extra: bool) -> tuple[CifarSource, CifarArrays]:
    """The dataset's verified (or, outside profile 'paper', flagged) source and its arrays."""
    data = params.data
    unverified_ok = params.profile != "paper"
    if dataset == "cifar100":
        source = locate_cifar100(data.cifar100_root, download=data.download, allow_unverified=unverified_ok)
        return source, load_cifar100(source)
    if dataset == "svhn":
        source = locate_svhn(
            data.svhn_root, download=data.download, include_extra=svhn_extra, allow_unverified=unverified_ok
        )
        return source, load_svhn(source)
    source = locate_cifar10(data.cifar10_root, download=data.download, subset_fallback=data.subset_fallback)
    return source, load_cifar10(source)
