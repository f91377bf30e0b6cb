"""The prepare_data stage: locate (or download) CIFAR-10, verify it, and store it for every later stage."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from isdarts.config import Params
from isdarts.data.cifar import load_cifar10, locate_cifar10, save_prepared
from isdarts.errors import ConfigError
from isdarts.pipeline.layout import PREPARED_DIR

log = logging.getLogger(__name__)


def prepare_data(params: Params, out_dir: Path = PREPARED_DIR) -> dict[str, Any]:
    """Store CIFAR-10 as one uint8 array file with a manifest; profile 'paper' refuses anything but the full,
    verified dataset."""
    source = locate_cifar10(
        params.data.cifar10_root, download=params.data.download, subset_fallback=params.data.subset_fallback
    )
    if source.kind != "full":
        log.warning("%s", source.note)
    if params.profile == "paper" and not (source.kind == "full" and source.verified):
        raise ConfigError(f"params.yaml: profile 'paper' needs the full, verified CIFAR-10, but found: {source.note}")
    arrays = load_cifar10(source)
    return save_prepared(arrays, source.as_dict(), out_dir)
