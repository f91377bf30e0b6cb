"""CIFAR-100: locate (or download), verify against the official md5s, and load into ``CifarArrays``.

The layout is the original python-pickle release: a folder ``cifar-100-python`` holding ``train``,
``test`` and ``meta``, shipped as ``cifar-100-python.tar.gz``. Reading reuses the restricted
unpickler and the in-memory types of :mod:`isdarts.data.cifar`, so CIFAR-10 and CIFAR-100 land in
the same ``CifarArrays`` (uint8 N x 3 x 32 x 32 images, int64 fine labels, 100 class names).

Downloads never leave a half-written file: the archive is streamed into a temporary file beside its
destination, its md5 checked, and only then renamed into place; extraction goes to a temporary
folder that replaces ``cifar-100-python`` in one step. ``fetch_verified`` is shared with
:mod:`isdarts.data.svhn`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from isdarts.data.cifar import CifarArrays, CifarSource, md5_file, unpickle_batch
from isdarts.data.datasets import CIFAR100_MEAN, CIFAR100_STD  # AutoDL's statistics; re-exported here
from isdarts.errors import DataError
from isdarts.io import replace_dir

DATASET = "CIFAR-100"
BASE_FOLDER = "cifar-100-python"
ARCHIVE_NAME = "cifar-100-python.tar.gz"
URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
TRAIN_FILE, TEST_FILE, META_FILE = "train", "test", "meta"
ALL_FILES = (TRAIN_FILE, TEST_FILE, META_FILE)
# Official md5s of the archive and of its extracted files: the values torchvision 0.29's
# datasets/cifar.py (class CIFAR100) checks, which are those of the release on the URL above.
OFFICIAL_MD5 = {
    ARCHIVE_NAME: "eb9058c3a382ffc7106e4002c42a8d85",
    TRAIN_FILE: "16019d7e3df5f24257cddd939b257f8d",
    TEST_FILE: "f0ef6b0ae62326f3e7ffdfab6717acfc",
    META_FILE: "7973b15100ade9c7d40fb424638fde48",
}
N_TRAIN, N_TEST, N_FINE, N_COARSE = 50_000, 10_000, 100, 20

HOW_TO_GET = (
    f"put the folder {BASE_FOLDER}/ (train, test, meta, as extracted from {ARCHIVE_NAME}) or the archive "
    f"itself in the folder data.cifar100_root names in params.yaml, or set data.download: true to fetch {URL}"
)


@dataclass
class Cifar100Arrays(CifarArrays):
    """CIFAR-100 in memory: the CifarArrays fields hold the 100 fine classes; the 20 superclasses ride along."""

    train_coarse: np.ndarray | None = None
    test_coarse: np.ndarray | None = None
    coarse_classes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- downloading


def fetch_verified(url: str, dest: Path, md5: str, *, dataset: str) -> None:
    """Download ``url`` to ``dest`` if and only if its md5 is ``md5``; otherwise leave nothing behind.

    The bytes go to a temporary file in ``dest``'s folder (same file system, so the final rename is
    atomic) and are hashed on the way, so a truncated or corrupted transfer is caught before it can
    be mistaken for the dataset. Any failure raises DataError naming the URL and the manual fix.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    manual = (
        f"When offline, fetch {url} by hand, check its md5 is {md5}, put it at {dest} and set data.download: false"
    )
    try:
        digest = hashlib.md5(usedforsecurity=False)
        # Some servers refuse urllib's default agent; name ours.
        request = urllib.request.Request(url, headers={"User-Agent": "isdarts-data/1"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=60) as response:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
        found = digest.hexdigest()
        if found != md5:
            raise DataError(
                f"downloaded {dataset} file {dest.name} from {url} has md5 {found}, expected {md5}: the "
                f"download is corrupt or truncated and was deleted. Run again to re-fetch it. {manual}."
            )
        os.replace(tmp, dest)
    except DataError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:  # network, HTTP, disk: all mean "no verified file", all get the same fix
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"downloading {dataset} from {url} failed ({type(exc).__name__}: {exc}); nothing was kept. {manual}."
        ) from exc
    except BaseException:  # Ctrl-C mid-transfer: still no partial file
        tmp.unlink(missing_ok=True)
        raise


def md5_mismatches(folder: Path, names: tuple[str, ...], md5s: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(name, expected, found) for each file in ``folder`` whose md5 differs from the table."""
    found = {name: md5_file(folder / name) for name in names}
    return [(name, md5s[name], found[name]) for name in names if found[name] != md5s[name]]


def describe_mismatches(dataset: str, folder: Path, bad: list[tuple[str, str, str]], fix: str) -> str:
    """The checksum-failure message: every bad file with its expected and found md5, then the fix."""
    lines = "; ".join(f"{folder / name}: expected md5 {want}, found {got}" for name, want, got in bad)
    return (
        f"{dataset} checksum mismatch ({lines}). The file is corrupt or truncated (or not the official "
        f"release). {fix}"
    )


def _require_keys(md5s: Mapping[str, str], names: tuple[str, ...]) -> None:
    missing = [name for name in names if name not in md5s]
    if missing:
        raise ValueError(f"the md5 table lacks {missing}; give an md5 for every file it is used to check")


# ----------------------------------------------------------------------------- locating


def _folder(root: Path) -> Path:
    """Accept either the folder holding cifar-100-python or that folder itself."""
    root = Path(root).expanduser()
    return root if root.name == BASE_FOLDER else root / BASE_FOLDER


def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """The archive's members, refused unless each is a plain file or folder inside cifar-100-python/."""
    members = tar.getmembers()
    for m in members:
        parts = PurePosixPath(m.name).parts
        if not (m.isfile() or m.isdir()) or not parts or parts[0] != BASE_FOLDER or ".." in parts:
            raise DataError(
                f"{archive} holds an unexpected entry {m.name!r}; it is not the official {ARCHIVE_NAME}. "
                f"Delete it and download again (data.download: true)."
            )
    return members


def _extract(archive: Path, folder: Path) -> None:
    """Extract ``archive`` so that ``folder`` appears complete or not at all."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = _safe_members(tar, archive)
                # The "data" filter (where Python has it) also strips modes and owners we do not want.
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(tmp, members=members, **kwargs)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(
                f"{archive} is corrupt or truncated ({type(exc).__name__}: {exc}); delete it and "
                f"download again (data.download: true, {URL})."
            ) from exc
        extracted = tmp / BASE_FOLDER
        missing = [name for name in ALL_FILES if not (extracted / name).is_file()]
        if missing:
            raise DataError(f"{archive} lacks {', '.join(missing)}; it is not the official {ARCHIVE_NAME}.")
        replace_dir(extracted, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_complete(folder: Path) -> None:
    missing = [name for name in ALL_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"{DATASET} folder {folder} is incomplete: missing {', '.join(missing)}. Delete it and re-extract "
            f"{ARCHIVE_NAME} there, or delete it and set data.download: true to fetch {URL}."
        )


def locate_cifar100(
    root: Path | None,
    *,
    download: bool,
    md5s: Mapping[str, str] = OFFICIAL_MD5,
    url: str = URL,
    allow_unverified: bool = False,
) -> CifarSource:
    """Find CIFAR-100 under ``root``, fetching or extracting it if needed, and verify every file.

    Order: an existing ``cifar-100-python`` folder; else ``cifar-100-python.tar.gz`` beside it
    (md5-checked, then extracted); else, with ``download``, the archive from ``url``. ``md5s`` maps
    each file name (and the archive name) to its md5, the official table by default. Files that
    differ raise DataError, unless ``allow_unverified``: then readable files are returned as a
    "subset" source, never as the official dataset.
    """
    _require_keys(md5s, (*ALL_FILES, ARCHIVE_NAME))
    if root is None:
        raise DataError(f"{DATASET}: no root folder given; {HOW_TO_GET}.")
    folder = _folder(root)
    how = "found"
    if not any((folder / name).exists() for name in ALL_FILES):
        archive = folder.parent / ARCHIVE_NAME
        if archive.is_file():
            if (found := md5_file(archive)) != md5s[ARCHIVE_NAME]:
                raise DataError(describe_mismatches(
                    DATASET, folder.parent, [(ARCHIVE_NAME, md5s[ARCHIVE_NAME], found)],
                    f"Delete {archive} and set data.download: true to fetch {url} again.",
                ))
            how = "extracted from the local archive"
        elif download:
            fetch_verified(url, archive, md5s[ARCHIVE_NAME], dataset=DATASET)
            how = "downloaded"
        else:
            raise DataError(
                f"{DATASET} not found: expected {folder}/ with {', '.join(ALL_FILES)} (or {archive}). "
                f"To fix: {HOW_TO_GET}."
            )
        _extract(archive, folder)
    _check_complete(folder)

    bad = md5_mismatches(folder, ALL_FILES, md5s)
    if not bad:
        return CifarSource(folder, "full", True, f"{DATASET} ({how}); every file matches its md5")
    if not allow_unverified:
        raise DataError(describe_mismatches(
            DATASET, folder, bad,
            f"Re-fetch it: delete {folder} and re-extract {ARCHIVE_NAME}, or set data.download: true ({url}).",
        ))
    arrays = _read_folder(folder)  # a malformed file must fail here, not later in training
    note = (
        f"NOT the official {DATASET}: {', '.join(name for name, _, _ in bad)} differ from the md5 table; "
        f"{len(arrays.train_y):,} training / {len(arrays.test_y):,} test images. Results are not comparable."
    )
    return CifarSource(folder, "subset", False, note)


# ----------------------------------------------------------------------------- reading


def _labels(path: Path, values: object, key: str, n: int, n_classes: int) -> np.ndarray:
    if not isinstance(values, list | tuple) or len(values) != n:
        count = len(values) if isinstance(values, list | tuple) else type(values).__name__
        raise DataError(f"{path}: {count} {key} for {n} images; replace the file.")
    y = np.asarray(values, dtype=np.int64)
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(
            f"{path}: {key} outside 0..{n_classes - 1} (min {y.min()}, max {y.max()}); replace the file."
        )
    return y


def _read_split(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images N x 3 x 32 x 32, fine labels, coarse labels) of one pickled split."""
    d = unpickle_batch(path, HOW_TO_GET, DATASET)
    missing = [k.decode() for k in (b"data", b"fine_labels", b"coarse_labels") if k not in d]
    if missing:
        raise DataError(f"{path} lacks key(s) {missing}; it is not a {DATASET} python split.")
    data = d[b"data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' must be uint8 of shape (n, 3072), got {desc}; replace the file.")
    n = len(data)
    fine = _labels(path, d[b"fine_labels"], "fine_labels", n, N_FINE)
    coarse = _labels(path, d[b"coarse_labels"], "coarse_labels", n, N_COARSE)
    # Rows are 1024 red, 1024 green, 1024 blue values, each row-major: channels first, as in CIFAR-10.
    return data.reshape(-1, 3, 32, 32), fine, coarse


def _names(path: Path, meta: dict, key: bytes, count: int) -> list[str]:
    names = meta.get(key)
    if not isinstance(names, list) or len(names) != count:
        raise DataError(f"{path}: {key!r} must be a list of {count} names; replace the file.")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _read_folder(folder: Path) -> Cifar100Arrays:
    train_x, train_y, train_c = _read_split(folder / TRAIN_FILE)
    test_x, test_y, test_c = _read_split(folder / TEST_FILE)
    meta_path = folder / META_FILE
    meta = unpickle_batch(meta_path, HOW_TO_GET, DATASET)
    return Cifar100Arrays(
        train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        classes=_names(meta_path, meta, b"fine_label_names", N_FINE),
        train_coarse=train_c, test_coarse=test_c,
        coarse_classes=_names(meta_path, meta, b"coarse_label_names", N_COARSE),
        dataset="cifar100", mean=CIFAR100_MEAN, std=CIFAR100_STD,
    )


def load_cifar100(source: CifarSource) -> Cifar100Arrays:
    """Read ``source``'s train and test splits, in file order, with fine labels as ``*_y``."""
    return _read_folder(source.path)
