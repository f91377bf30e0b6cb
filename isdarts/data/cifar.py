"""CIFAR-10: locate, verify against the official checksums, load; and the prepared copy of any dataset.

The prepared copy (``save_prepared``/``load_prepared``) is shared with CIFAR-100 and SVHN: one npz of uint8
arrays and a manifest that names its dataset and the normalisation statistics its batches use.

The batches are read with our own code rather than torchvision's dataset class so that a
well-formed subset (whose md5s cannot match the official ones) loads with the same reader,
and so that every failure says which file is wrong and how to fix it.
"""

from __future__ import annotations

import json
import pickle
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from isdarts.data.datasets import CIFAR10_MEAN, CIFAR10_STD, DEFAULT_DATASET, DatasetInfo, dataset_info
from isdarts.errors import ConfigError, DataError
from isdarts.io import file_digest, replace_dir

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

BASE_FOLDER = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
TRAIN_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
# Official md5s of the extracted files (the same values torchvision checks).
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
# md5s of the shared 5,551/1,017 subset (shared/data/cifar10-subset/README.md), so that exact
# subset can be reported as verified rather than merely well-formed.
SHARED_SUBSET_MD5 = {
    "data_batch_1": "be8fdf09a21d76347335a1add28a42c2",
    "data_batch_2": "1ed9cf9a3cb3535ba5b7699e7bbbbd0e",
    "data_batch_3": "1cb3ae1f26b7af56dcf7a0343d6dfe68",
    "data_batch_4": "b7568b526c0a6cda08f2d162d96a747b",
    "data_batch_5": "4871bfc31896e1b5b585aec0a98b2efb",
    "test_batch": "fbe8f7adf207a16336a9f4ff89879e33",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
ALL_FILES = (*TRAIN_FILES, *TEST_FILES, META_FILE)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NPZ_NAME = "cifar10.npz"
MANIFEST_NAME = "manifest.json"

HOW_TO_GET = (
    "set data.cifar10_root in params.yaml to the folder that contains cifar-10-batches-py, "
    "or set data.download: true when online"
)



@dataclass
class CifarSource:
    """Where the CIFAR-10 batches were found and what we know about them."""

    path: Path  # the cifar-10-batches-py folder
    kind: Literal["full", "subset"]
    verified: bool  # every file matched a known md5 table
    note: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description, the start of a prepared-data manifest."""
        return {
            "kind": self.kind, "verified": self.verified, "note": self.note, "source_path": str(self.path)
        }


@dataclass
class CifarArrays:
    """A CIFAR-format dataset in memory: uint8 images N x 3 x 32 x 32 and int64 labels, with the name and the
    normalisation statistics of the dataset they are (CIFAR-10 unless the loader that made them says otherwise),
    so whoever batches them normalises them with their own constants."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    dataset: str = DEFAULT_DATASET  # a name of isdarts.data.datasets.DATASETS
    mean: tuple[float, ...] = CIFAR10_MEAN  # per-channel, in [0, 1]
    std: tuple[float, ...] = CIFAR10_STD

    @property
    def info(self) -> DatasetInfo:
        """The dataset's row (label, params key, how to prepare it)."""
        return dataset_info(self.dataset)


# ----------------------------------------------------------------------------- locating


def md5_file(path: Path) -> str:
    return file_digest(path, "md5")


def _batches_dir(root: Path) -> Path:
    """Accept either the folder holding cifar-10-batches-py or that folder itself."""
    root = Path(root).expanduser()
    if root.name == BASE_FOLDER or (root / TRAIN_FILES[0]).exists():
        return root
    return root / BASE_FOLDER


def _present(folder: Path) -> list[str]:
    return [name for name in ALL_FILES if (folder / name).is_file()]


def _check_complete(folder: Path) -> None:
    missing = [name for name in ALL_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 folder {folder} is incomplete: missing {', '.join(missing)}. "
            f"Delete it and re-extract {ARCHIVE_NAME} there, or {HOW_TO_GET}."
        )


def _mismatches(folder: Path, table: dict[str, str]) -> list[str]:
    return [name for name in ALL_FILES if md5_file(folder / name) != table[name]]


def _subset_source(folder: Path) -> CifarSource:
    """Read a non-official folder fully (raises DataError if malformed) and describe it honestly."""
    arrays = _read_folder(folder)
    n_train, n_test = len(arrays.train_y), len(arrays.test_y)
    verified = not _mismatches(folder, SHARED_SUBSET_MD5)
    note = (
        f"SUBSET of CIFAR-10: {n_train:,} training / {n_test:,} test images, not the official "
        f"50,000 / 10,000. Accuracies from it are NOT comparable with full-data (paper) results."
    )
    if verified:
        note += " Files match the md5s of the shared real 5,551-image subset."
    else:
        note += " Files match no known md5 table (synthetic or locally cut data)."
    return CifarSource(path=folder, kind="subset", verified=verified, note=note)


def _download(root: Path) -> None:
    import torchvision  # imported lazily: slow to import and only needed here

    try:
        # torchvision checks the archive md5 (ARCHIVE_MD5) before extracting.
        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # network, disk and checksum failures all land here
        raise DataError(
            f"downloading CIFAR-10 into {root} failed ({type(exc).__name__}: {exc}). "
            f"When offline, copy {ARCHIVE_NAME} (md5 {ARCHIVE_MD5}) extracted into {root} and set "
            f"data.download: false."
        ) from exc


def locate_cifar10(
    root: Path | None,
    *,
    download: bool,
    subset_fallback: Path | None,
    allow_subset: bool = False,
) -> CifarSource:
    """Find CIFAR-10, verify it, and say plainly whether it is the full dataset or a subset.

    Order: ``root`` (verified against the official md5s), then a download into ``root`` when
    ``download`` is set, then ``subset_fallback``. Files under ``root`` whose md5s differ are
    accepted as a subset only with ``allow_subset`` (or when ``root`` is the fallback itself);
    anything else raises DataError listing what was tried and how to fix it.
    """
    tried: list[str] = []
    fallback_dir = _batches_dir(subset_fallback) if subset_fallback is not None else None

    if root is not None:
        folder = _batches_dir(root)
        tried.append(str(folder))
        if _present(folder):
            _check_complete(folder)
            bad = _mismatches(folder, OFFICIAL_MD5)
            if not bad:
                return CifarSource(folder, "full", True, "official CIFAR-10 (50,000 train / 10,000 test)")
            is_fallback = fallback_dir is not None and folder.resolve() == fallback_dir.resolve()
            if allow_subset or is_fallback:
                return _subset_source(folder)
            _read_folder(folder)  # a malformed file is the more useful error, so report it first
            raise DataError(
                f"CIFAR-10 at {folder} does not match the official md5s ({', '.join(bad)} differ): "
                f"the files are readable, so this looks like a subset or a modified copy. Point "
                f"data.cifar10_root at the full dataset, or allow the subset explicitly "
                f"(allow_subset / data.subset_fallback) knowing results are not comparable."
            )
        if download:
            _download(folder.parent)  # torchvision extracts into <its root>/cifar-10-batches-py
            _check_complete(folder)
            bad = _mismatches(folder, OFFICIAL_MD5)
            if bad:
                raise DataError(
                    f"downloaded CIFAR-10 at {folder} fails the official md5 check ({', '.join(bad)}). "
                    f"Delete {folder} and download again."
                )
            return CifarSource(folder, "full", True, "official CIFAR-10, downloaded and verified")
    elif download:
        raise DataError(f"data.download is true but no root was given to download into; {HOW_TO_GET}.")

    if fallback_dir is not None:
        tried.append(str(fallback_dir))
        if _present(fallback_dir):
            _check_complete(fallback_dir)
            return _subset_source(fallback_dir)

    raise DataError(
        "CIFAR-10 not found; tried: " + (", ".join(tried) or "nothing (no root and no fallback given)")
        + f". To fix: {HOW_TO_GET}."
    )


# ----------------------------------------------------------------------------- reading


class _BatchUnpickler(pickle.Unpickler):
    """Only the globals a CIFAR batch needs, so a tampered file cannot run code when loaded."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol 2 stores bytes written by Python 3
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected global {module}.{name}")
        if name == "_reconstruct":
            return _reconstruct  # old pickles name numpy.core, which numpy 2 renamed to numpy._core
        return super().find_class(module, name)


def unpickle_batch(path: Path, how_to_get: str = HOW_TO_GET, what: str = "CIFAR batch") -> dict:
    """One file of a CIFAR python-pickle folder, as a dict; a missing or bad file is named with `how_to_get`."""
    if not path.is_file():
        raise DataError(f"{path} is missing; {how_to_get}.")
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # EOFError, UnpicklingError, ValueError... all mean a bad file
        raise DataError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
            f"replace it with the original file, or {how_to_get}."
        ) from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a {what} dict; replace the file.")
    return obj


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = unpickle_batch(path)
    missing = [k.decode() for k in (b"data", b"labels") if k not in d]
    if missing:
        raise DataError(f"{path} lacks key(s) {missing}; it is not a CIFAR-10 python batch.")
    data, labels = d[b"data"], d[b"labels"]
    shape_ok = isinstance(data, np.ndarray) and data.ndim == 2 and data.shape[1] == 3072
    if not (shape_ok and data.dtype == np.uint8):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' must be uint8 of shape (n, 3072), got {desc}; replace the file.")
    if not isinstance(labels, list | tuple) or len(labels) != len(data):
        n = len(labels) if isinstance(labels, Sequence) else "?"
        raise DataError(f"{path}: {n} labels for {len(data)} images; replace the file.")
    y = np.asarray(labels, dtype=np.int64)
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{path}: labels outside 0..9 (min {y.min()}, max {y.max()}); replace the file.")
    return data.reshape(-1, 3, 32, 32), y


def _read_classes(folder: Path) -> list[str]:
    path = folder / META_FILE
    meta = unpickle_batch(path)
    names = meta.get(b"label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DataError(f"{path}: b'label_names' must be a list of 10 names; replace the file.")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _read_folder(folder: Path) -> CifarArrays:
    train = [_read_batch(folder / name) for name in TRAIN_FILES]
    test = [_read_batch(folder / name) for name in TEST_FILES]
    return CifarArrays(
        train_x=np.concatenate([x for x, _ in train]),
        train_y=np.concatenate([y for _, y in train]),
        test_x=np.concatenate([x for x, _ in test]),
        test_y=np.concatenate([y for _, y in test]),
        classes=_read_classes(folder),
    )


def load_cifar10(source: CifarSource) -> CifarArrays:
    """Read the python-format batches of ``source`` into uint8 N x 3 x 32 x 32 arrays, in file order."""
    return _read_folder(source.path)


# ----------------------------------------------------------------------------- prepared copy


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def _counts(y: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    per_class = np.bincount(y, minlength=len(classes))
    return {"total": int(len(y)), "per_class": {c: int(n) for c, n in zip(classes, per_class, strict=True)}}


def npz_name(dataset: str) -> str:
    """The prepared array file of `dataset`: ``cifar10.npz`` (as it always was), ``cifar100.npz``, ``svhn.npz``."""
    return NPZ_NAME if dataset == DEFAULT_DATASET else f"{dataset_info(dataset).name}.npz"


def save_prepared(arrays: CifarArrays, manifest: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write ``<dataset>.npz`` and ``manifest.json`` into ``out_dir`` all-or-nothing.

    ``manifest`` (typically ``source.as_dict()``) is extended with the dataset's name and normalisation
    mean/std (from ``arrays``), classes, counts and the npz sha256. Files are written into a temporary
    folder beside ``out_dir`` and renamed into place, so a crash never leaves a half-written output for DVC
    to cache. Returns the manifest.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        npz = tmp / npz_name(arrays.dataset)
        with open(npz, "wb") as f:
            np.savez(
                f, train_x=arrays.train_x, train_y=arrays.train_y, test_x=arrays.test_x, test_y=arrays.test_y
            )
        full = {
            **manifest,
            "dataset": arrays.dataset,
            "mean": [float(v) for v in arrays.mean],
            "std": [float(v) for v in arrays.std],
            "classes": list(arrays.classes),
            "counts": {
                "train": _counts(arrays.train_y, arrays.classes),
                "test": _counts(arrays.test_y, arrays.classes),
            },
            "npz_sha256": sha256_file(npz),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(full, indent=2) + "\n")
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return full


def load_prepared(out_dir: Path, dataset: str | None = None) -> tuple[CifarArrays, dict[str, Any]]:
    """Load what ``save_prepared`` wrote, refusing an npz whose sha256 differs from the manifest.

    The arrays carry the manifest's dataset and mean/std; a manifest written before those keys existed is
    CIFAR-10's, with its constants. Given ``dataset``, the folder must hold that dataset, and a missing folder
    is named with the command that prepares it.
    """
    out_dir = Path(out_dir)
    expected = dataset_info(dataset or DEFAULT_DATASET)
    fix = f"re-run `{expected.prepare_command()}`"
    manifest_path = out_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        need = f"{npz_name(expected.name)} and {MANIFEST_NAME}"
        raise DataError(f"prepared {expected.label} missing in {out_dir} (need {need}); {fix}.")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{manifest_path} is not valid JSON ({exc}); {fix}.") from exc
    if not isinstance(manifest, dict):
        raise DataError(f"{manifest_path} holds a JSON {type(manifest).__name__}, not a manifest; {fix}.")
    info = _manifest_dataset(manifest, manifest_path, fix)
    fix = f"re-run `{info.prepare_command()}`"
    if dataset is not None and info.name != expected.name:
        raise DataError(
            f"{out_dir} holds prepared {info.label}, not {expected.label}; run `{expected.prepare_command()}` and "
            f"read its own prepared folder."
        )
    npz = out_dir / npz_name(info.name)
    if not npz.is_file():
        raise DataError(f"prepared {info.label} missing in {out_dir} (need {npz.name} and {MANIFEST_NAME}); {fix}.")
    digest = sha256_file(npz)
    if digest != manifest.get("npz_sha256"):
        raise DataError(
            f"{npz} sha256 {digest} does not match {manifest_path} ({manifest.get('npz_sha256')}); {fix}."
        )
    mean, std = (_statistic(manifest, key, info, manifest_path, fix) for key in ("mean", "std"))
    with np.load(npz, allow_pickle=False) as z:
        arrays = CifarArrays(
            train_x=z["train_x"], train_y=z["train_y"], test_x=z["test_x"], test_y=z["test_y"],
            classes=list(manifest.get("classes", CLASSES)), dataset=info.name, mean=mean, std=std,
        )
    return arrays, manifest


def _manifest_dataset(manifest: dict[str, Any], path: Path, fix: str) -> DatasetInfo:
    """The dataset a manifest names; one without the key predates the other datasets and is CIFAR-10."""
    try:
        return dataset_info(manifest.get("dataset", DEFAULT_DATASET))
    except ConfigError as exc:
        raise DataError(f"{path}: {exc}; {fix}.") from None


def _statistic(manifest: dict[str, Any], key: str, info: DatasetInfo, path: Path, fix: str) -> tuple[float, ...]:
    """The manifest's per-channel mean or std; an old CIFAR-10 manifest without them gets CIFAR-10's constants."""
    if key not in manifest and info.name == DEFAULT_DATASET:
        return getattr(info, key)
    value = manifest.get(key)
    ok = (
        isinstance(value, list) and len(value) == 3
        and all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in value)
        and (key == "mean" or all(v > 0 for v in value))
    )
    if not ok:
        want = "3 finite numbers" if key == "mean" else "3 positive numbers"
        raise DataError(f"{path}: {key!r} must be a list of {want} (per channel), got {value!r}; {fix}.")
    return tuple(float(v) for v in value)
