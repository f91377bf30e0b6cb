"""Per-epoch checkpoints: written atomically, fingerprinted by the settings that produced them."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import torch

from isdarts.errors import CheckpointError
from isdarts.io import atomic_torch_save

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of everything that must match for a checkpoint to be resumed."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def code_fingerprint(modules: tuple[str, ...]) -> str:
    """A short hash of the source of the modules that decide a run's numbers.

    A checkpoint written by other versions of them is not resumed: DVC re-runs a stage after a code change,
    and resuming a finished run would silently keep the old code's results. Only the modules that decide
    the numbers are listed, so an edit elsewhere (logging, the report, another stage's config) keeps
    every checkpoint.
    """
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            raise CheckpointError(f"code fingerprint: module {name} not found; fix its name in the result-module list")
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()[:16]


def save_checkpoint(path: Path, state: dict[str, Any], settings_fingerprint: str) -> None:
    atomic_torch_save(path, {"format": FORMAT_VERSION, "fingerprint": settings_fingerprint, **state})


def load_checkpoint(path: Path, settings_fingerprint: str) -> dict[str, Any] | None:
    """The saved state to resume from, or None when there is none or it belongs to other settings.

    A file that cannot be read is an error: restarting over it would silently throw away work.
    """
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}: {exc}). "
            f"Delete it to restart this search from scratch, or restore a good copy."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} is not an isdarts checkpoint of format {FORMAT_VERSION}; delete it to restart"
        )
    if state.get("fingerprint") != settings_fingerprint:
        log.warning(
            "checkpoint %s was made with other settings, data or code; starting afresh", path
        )
        return None
    return state
