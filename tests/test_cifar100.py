"""isdarts.data.cifar100: locating, verifying, downloading and reading CIFAR-100 in its original format."""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from isdarts.data import cifar100
from isdarts.data.cifar import CifarArrays
from isdarts.data.cifar100 import (
    ARCHIVE_NAME,
    BASE_FOLDER,
    OFFICIAL_MD5,
    load_cifar100,
    locate_cifar100,
    md5_file,
)
from isdarts.errors import DataError

FINE = [f"fine_{i:02d}" for i in range(100)]
COARSE = [f"coarse_{i:02d}" for i in range(20)]


def _dump(obj: dict, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # protocol 2, as the original Python-2 files


def write_fake_cifar100(root: Path, n_train: int = 30, n_test: int = 20, seed: int = 0) -> Path:
    """A small cifar-100-python folder with the real file names and key names (bytes keys, as the originals)."""
    rng = np.random.default_rng(seed)
    folder = root / BASE_FOLDER
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        _dump(
            {
                b"filenames": [f"{name}_{i}.png".encode() for i in range(n)],
                b"batch_label": f"{name}ing batch 1 of 1".encode(),
                b"fine_labels": [int(v) for v in fine],
                b"coarse_labels": [int(v) // 5 for v in fine],
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            },
            folder / name,
        )
    _dump({b"fine_label_names": [c.encode() for c in FINE], b"coarse_label_names": [c.encode() for c in COARSE]},
          folder / "meta")
    return folder


def _table(folder: Path, archive: Path | None = None) -> dict[str, str]:
    """The md5 table of the small test files, in the shape of OFFICIAL_MD5."""
    table = {name: md5_file(folder / name) for name in ("train", "test", "meta")}
    table[ARCHIVE_NAME] = md5_file(archive) if archive else "0" * 32
    return table


def _make_archive(src_root: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src_root / BASE_FOLDER, arcname=BASE_FOLDER)
    return out


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "c100"
    folder = write_fake_cifar100(root)
    return root, _table(folder)


# ----------------------------------------------------------------------------- reading


def test_round_trip_arrays_labels_and_classes(fake) -> None:
    root, table = fake
    source = locate_cifar100(root, download=False, md5s=table)
    assert (source.kind, source.verified, source.path) == ("full", True, root / BASE_FOLDER)
    data = load_cifar100(source)
    assert isinstance(data, CifarArrays)
    assert data.train_x.shape == (30, 3, 32, 32) and data.train_x.dtype == np.uint8
    assert data.test_x.shape == (20, 3, 32, 32) and data.test_y.dtype == np.int64
    # An independent read of the raw pickle: fine labels are the labels, rows are R, G, B planes.
    with open(source.path / "train", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    np.testing.assert_array_equal(data.train_x.reshape(30, 3072), raw[b"data"])
    np.testing.assert_array_equal(data.train_x[:, 1], raw[b"data"][:, 1024:2048].reshape(30, 32, 32))
    assert data.train_y.tolist() == raw[b"fine_labels"]
    assert data.train_coarse.tolist() == raw[b"coarse_labels"]
    assert data.classes == FINE and data.coarse_classes == COARSE
    # The root may also name the cifar-100-python folder itself.
    assert locate_cifar100(root / BASE_FOLDER, download=False, md5s=table).path == root / BASE_FOLDER


def test_bad_labels_and_foreign_pickles_are_refused(fake) -> None:
    root, _ = fake
    folder = root / BASE_FOLDER
    with open(folder / "test", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    d[b"fine_labels"][0] = 100
    _dump(d, folder / "test")
    with pytest.raises(DataError, match=r"test: fine_labels outside 0\.\.99"):
        load_cifar100(locate_cifar100(root, download=False, md5s=_table(folder)))
    _dump({b"data": os.system}, folder / "test")  # a global that could run code is never resolved
    with pytest.raises(DataError, match="test is truncated or corrupt.*unexpected global"):
        load_cifar100(locate_cifar100(root, download=False, md5s=_table(folder)))


def test_normalisation_constants() -> None:
    np.testing.assert_allclose(cifar100.CIFAR100_MEAN, (0.5071, 0.4867, 0.4408), atol=1e-3)
    np.testing.assert_allclose(cifar100.CIFAR100_STD, (0.2675, 0.2565, 0.2761), atol=1e-3)


# ----------------------------------------------------------------------------- verification


def test_official_table_is_the_default_and_matches_torchvision(fake) -> None:
    root, _ = fake
    with pytest.raises(DataError, match="checksum mismatch") as err:
        locate_cifar100(root, download=False)
    assert OFFICIAL_MD5["train"] in str(err.value) and OFFICIAL_MD5["meta"] in str(err.value)
    tv = pytest.importorskip("torchvision.datasets").CIFAR100
    assert OFFICIAL_MD5[tv.filename] == tv.tgz_md5 and cifar100.URL == tv.url
    official = {name: md5 for name, md5 in [*tv.train_list, *tv.test_list]} | {tv.meta["filename"]: tv.meta["md5"]}
    assert {k: v for k, v in OFFICIAL_MD5.items() if k != ARCHIVE_NAME} == official


def test_corrupt_file_is_named_with_both_md5s(fake) -> None:
    root, table = fake
    path = root / BASE_FOLDER / "train"
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    found = md5_file(path)
    with pytest.raises(DataError) as err:
        locate_cifar100(root, download=False, md5s=table)
    msg = str(err.value)
    assert str(path) in msg and table["train"] in msg and found in msg
    assert "corrupt or truncated" in msg and "data.download: true" in msg
    assert "meta" not in msg.split("). ")[0]  # only the bad file is listed
    # Allowing unverified files does not accept unreadable ones.
    with pytest.raises(DataError, match="train is truncated or corrupt"):
        locate_cifar100(root, download=False, md5s=table, allow_unverified=True)


def test_unverified_readable_copy_is_a_subset_only_when_allowed(fake) -> None:
    root, _ = fake
    source = locate_cifar100(root, download=False, allow_unverified=True)  # official table: all differ
    assert source.kind == "subset" and not source.verified
    assert "NOT the official CIFAR-100" in source.note and "30 training / 20 test" in source.note


# ----------------------------------------------------------------------------- missing data


def test_missing_dataset_error_names_dataset_path_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        locate_cifar100(tmp_path / "nowhere", download=False)
    msg = str(err.value)
    assert "CIFAR-100 not found" in msg and str(tmp_path / "nowhere" / BASE_FOLDER) in msg
    assert "data.download: true" in msg and cifar100.URL in msg
    with pytest.raises(DataError, match="no root folder given.*data.download: true"):
        locate_cifar100(None, download=True)


def test_incomplete_folder_names_missing_file(fake) -> None:
    root, table = fake
    (root / BASE_FOLDER / "meta").unlink()
    with pytest.raises(DataError, match=r"incomplete: missing meta.*re-extract cifar-100-python\.tar\.gz"):
        locate_cifar100(root, download=True, md5s=table)  # a partial folder is never overwritten


# ----------------------------------------------------------------------------- download and archive


def test_download_from_file_url_verifies_and_extracts(tmp_path: Path) -> None:
    src = tmp_path / "src"
    folder = write_fake_cifar100(src)
    archive = _make_archive(src, tmp_path / ARCHIVE_NAME)
    table = _table(folder, archive)
    root = tmp_path / "data"
    source = locate_cifar100(root, download=True, md5s=table, url=archive.as_uri())
    assert source.kind == "full" and source.verified and "downloaded" in source.note
    assert sorted(p.name for p in root.iterdir()) == sorted([ARCHIVE_NAME, BASE_FOLDER])  # no temp files left
    assert md5_file(root / ARCHIVE_NAME) == table[ARCHIVE_NAME]
    data = load_cifar100(source)
    assert data.train_x.shape == (30, 3, 32, 32) and data.classes == FINE
    # Second call: found as is, nothing fetched (the URL is gone).
    archive.unlink()
    assert "found" in locate_cifar100(root, download=True, md5s=table, url=archive.as_uri()).note


def test_local_archive_is_extracted_without_download(tmp_path: Path) -> None:
    src = tmp_path / "src"
    folder = write_fake_cifar100(src)
    root = tmp_path / "data"
    root.mkdir()
    table = _table(folder, _make_archive(src, root / ARCHIVE_NAME))
    source = locate_cifar100(root, download=False, md5s=table)
    assert source.verified and "local archive" in source.note
    # A local archive with the wrong md5 is refused before anything is extracted.
    (root / BASE_FOLDER / "train").unlink()
    for name in ("test", "meta"):
        (root / BASE_FOLDER / name).unlink()
    with pytest.raises(DataError, match=f"{ARCHIVE_NAME}: expected md5 {OFFICIAL_MD5[ARCHIVE_NAME]}"):
        locate_cifar100(root, download=False)
    assert not any((root / BASE_FOLDER).iterdir())


def test_bad_download_leaves_nothing_behind(tmp_path: Path) -> None:
    src = tmp_path / "src"
    folder = write_fake_cifar100(src)
    archive = _make_archive(src, tmp_path / ARCHIVE_NAME)
    root = tmp_path / "data"
    # Wrong md5 (the default, official one): the transfer is deleted.
    with pytest.raises(DataError, match=r"has md5 \w+, expected eb9058c3.*corrupt or truncated and was deleted"):
        locate_cifar100(root, download=True, md5s=_table(folder) | {ARCHIVE_NAME: OFFICIAL_MD5[ARCHIVE_NAME]},
                        url=archive.as_uri())
    assert list(root.iterdir()) == []
    # An unreachable URL: same, and the message says how to fetch by hand.
    with pytest.raises(DataError, match="downloading CIFAR-100 from .* failed.*When offline"):
        locate_cifar100(root, download=True, md5s=_table(folder, archive), url=(tmp_path / "gone.tgz").as_uri())
    assert list(root.iterdir()) == []


def test_archive_with_right_md5_but_wrong_content_leaves_no_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    folder = write_fake_cifar100(src)
    (folder / "meta").unlink()  # an archive missing a member
    archive = _make_archive(src, tmp_path / ARCHIVE_NAME)
    root = tmp_path / "data"
    table = {"train": "0" * 32, "test": "0" * 32, "meta": "0" * 32, ARCHIVE_NAME: md5_file(archive)}
    with pytest.raises(DataError, match="lacks meta"):
        locate_cifar100(root, download=True, md5s=table, url=archive.as_uri())
    assert sorted(p.name for p in root.iterdir()) == [ARCHIVE_NAME]  # the verified archive stays, no half folder
