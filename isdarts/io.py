"""Atomic file and folder writes: an output either appears whole or not at all, even if the process is killed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from isdarts.errors import OutputWriteError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`.

    A failure on the way (disk full, I/O error, a kill) leaves the previous `path` as it was; an OSError
    becomes an OutputWriteError naming the file, as the OS message alone ("No space left on device") does not.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputWriteError):
            error = OutputWriteError(
                f"could not write {path}: {exc.strerror or exc}; the previous version of it is intact. "
                "Free disk space or fix the folder's permissions, then re-run (it resumes)"
            )
            error.errno = exc.errno
            raise error from exc
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """JSON with sorted keys and a trailing newline, so reruns with equal content are byte-identical."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch  # only here: the JSON and folder helpers must not pull torch into light modules

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def file_digest(path: str | Path, algorithm: str = "sha256", chunk_bytes: int = 1 << 22) -> str:
    """Hex digest of a file, read in chunks so multi-GB files (the NB201 benchmark) fit in memory."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def replace_dir(tmp: Path, dest: Path) -> None:
    """Move the finished folder `tmp` to `dest`, replacing what was there.

    A folder cannot be renamed over another in one step: the old one is moved aside first and restored
    if the swap fails, so `dest` is always either the old tree or the new one, never half of either.
    """
    tmp, dest = Path(tmp), Path(dest)
    if not dest.exists():
        os.replace(tmp, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
