"""SVHN (cropped digits, 32 x 32): locate (or download), verify against the official md5s, load into ``CifarArrays``.

The original release is three MATLAB files, ``train_32x32.mat``, ``test_32x32.mat`` and the optional
``extra_32x32.mat``, each holding ``X`` (32 x 32 x 3 x N uint8, MATLAB's rows x columns x channels x
images) and ``y`` (N x 1, digits 1..9 and 10 for the digit 0). We read them with ``scipy.io.loadmat``
(no code runs on load), move the images to N x 3 x 32 x 32 like CIFAR, and map label 10 to 0 so
the classes are "0".."9". ``extra`` is only verified and loaded when asked for; it is then appended
to the training split, the usual "train + extra" setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isdarts.data.cifar import CifarArrays, CifarSource
from isdarts.data.cifar100 import describe_mismatches, fetch_verified, md5_mismatches
from isdarts.data.datasets import SVHN_MEAN, SVHN_STD  # RobustDARTS's statistics; re-exported here
from isdarts.errors import DataError

DATASET = "SVHN"
BASE_URL = "http://ufldl.stanford.edu/housenumbers/"
TRAIN_FILE, TEST_FILE, EXTRA_FILE = "train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"
# Official md5s: the values torchvision 0.29's datasets/svhn.py (SVHN.split_list) checks for the
# files on BASE_URL.
OFFICIAL_MD5 = {
    TRAIN_FILE: "e26dedcc434d2e4c54c9b2d4a06d8373",
    TEST_FILE: "eb5a983be6a315427106f1b164d9cef3",
    EXTRA_FILE: "a93ce644f1a588dc4d68dda5feec44a7",
}
SPLIT_SIZES = {TRAIN_FILE: 73_257, TEST_FILE: 26_032, EXTRA_FILE: 531_131}
CLASSES = tuple(str(d) for d in range(10))

HOW_TO_GET = (
    f"put {TRAIN_FILE} and {TEST_FILE} (and {EXTRA_FILE} if extra is used) from {BASE_URL} into the folder "
    f"data.svhn_root names in params.yaml, or set data.download: true to fetch them"
)


@dataclass
class SvhnSource(CifarSource):
    """A CifarSource for SVHN's folder of .mat files, remembering whether ``extra`` joins the training split."""

    include_extra: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "include_extra": self.include_extra}


def _needed(include_extra: bool) -> tuple[str, ...]:
    return (TRAIN_FILE, TEST_FILE, EXTRA_FILE) if include_extra else (TRAIN_FILE, TEST_FILE)


# ----------------------------------------------------------------------------- locating


def locate_svhn(
    root: Path | None,
    *,
    download: bool,
    include_extra: bool = False,
    md5s: Mapping[str, str] = OFFICIAL_MD5,
    base_url: str = BASE_URL,
    allow_unverified: bool = False,
) -> SvhnSource:
    """Find SVHN's .mat files in ``root`` (downloading the missing ones with ``download``) and verify them.

    ``md5s`` maps each file name to its md5, the official table by default. Files that differ raise
    DataError, unless ``allow_unverified``: then readable files are returned as a "subset" source,
    never as the official dataset.
    """
    names = _needed(include_extra)
    missing_md5 = [name for name in names if name not in md5s]
    if missing_md5:
        raise ValueError(f"the md5 table lacks {missing_md5}; give an md5 for every file it is used to check")
    if root is None:
        raise DataError(f"{DATASET}: no root folder given; {HOW_TO_GET}.")
    folder = Path(root).expanduser()
    missing = [name for name in names if not (folder / name).is_file()]
    how = "found"
    if missing and not download:
        expected = ", ".join(str(folder / name) for name in missing)
        raise DataError(f"{DATASET} not found or incomplete: missing {expected}. To fix: {HOW_TO_GET}.")
    for name in missing:
        # One file at a time: a failure keeps the files already verified and no partial one.
        fetch_verified(base_url + name, folder / name, md5s[name], dataset=DATASET)
        how = "downloaded"

    bad = md5_mismatches(folder, names, md5s)
    if not bad:
        return SvhnSource(folder, "full", True, f"{DATASET} ({how}); every file matches its md5", include_extra)
    if not allow_unverified:
        fix = (
            f"Re-fetch it: delete {', '.join(str(folder / name) for name, _, _ in bad)} and set "
            f"data.download: true (files from {base_url})."
        )
        raise DataError(describe_mismatches(DATASET, folder, bad, fix))
    source = SvhnSource(folder, "subset", False, "", include_extra)
    arrays = load_svhn(source)  # a malformed file must fail here, not later in training
    source.note = (
        f"NOT the official {DATASET}: {', '.join(name for name, _, _ in bad)} differ from the md5 table; "
        f"{len(arrays.train_y):,} training / {len(arrays.test_y):,} test images. Results are not comparable."
    )
    return source


# ----------------------------------------------------------------------------- reading


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images N x 3 x 32 x 32, int64 labels 0..9) of one SVHN .mat file."""
    import scipy.io  # only here: most runs never touch SVHN

    if not path.is_file():
        raise DataError(f"{path} is missing; {HOW_TO_GET}.")
    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError... for bad bytes
        raise DataError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); replace it with the original "
            f"file, or {HOW_TO_GET}."
        ) from exc
    missing = [k for k in ("X", "y") if k not in mat]
    if missing:
        raise DataError(f"{path} lacks variable(s) {missing}; it is not an SVHN 32x32 .mat file.")
    x, y = mat["X"], mat["y"]
    if not (x.dtype == np.uint8 and x.ndim == 4 and x.shape[:3] == (32, 32, 3)):
        raise DataError(f"{path}: X must be uint8 of shape (32, 32, 3, n), got {x.dtype} {x.shape}; replace the file.")
    n = x.shape[3]
    if y.size != n or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"{path}: y must hold {n} numeric labels, got {y.dtype} {y.shape}; replace the file.")
    labels = y.reshape(-1).astype(np.int64)
    if n and (labels.min() < 1 or labels.max() > 10 or not np.array_equal(labels, y.reshape(-1))):
        raise DataError(f"{path}: labels must be whole numbers 1..10 (10 is the digit 0); replace the file.")
    labels[labels == 10] = 0
    # MATLAB's (row, column, channel, image) -> (image, channel, row, column), contiguous for torch.
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels


def load_svhn(source: CifarSource) -> CifarArrays:
    """Read ``source``'s train (plus extra, if the source includes it) and test splits, in file order."""
    folder = source.path
    train_x, train_y = _read_mat(folder / TRAIN_FILE)
    if getattr(source, "include_extra", False):
        extra_x, extra_y = _read_mat(folder / EXTRA_FILE)
        train_x, train_y = np.concatenate([train_x, extra_x]), np.concatenate([train_y, extra_y])
    test_x, test_y = _read_mat(folder / TEST_FILE)
    return CifarArrays(
        train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, classes=list(CLASSES),
        dataset="svhn", mean=SVHN_MEAN, std=SVHN_STD,
    )
