"""isdarts.data.svhn: locating, verifying, downloading and reading SVHN's original .mat files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from isdarts.data import svhn
from isdarts.data.cifar import md5_file
from isdarts.data.svhn import (
    EXTRA_FILE,
    OFFICIAL_MD5,
    TEST_FILE,
    TRAIN_FILE,
    SvhnSource,
    load_svhn,
    locate_svhn,
)
from isdarts.errors import DataError

SIZES = {TRAIN_FILE: 25, TEST_FILE: 15, EXTRA_FILE: 10}


def write_fake_svhn(folder: Path, label_dtype: type = np.uint8, seed: int = 0) -> dict[str, str]:
    """Small .mat files with the real variable names, shapes and dtypes; returns their md5 table."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in SIZES.items():
        y = np.arange(n) % 10 + 1  # 1..10, every digit present, 10 standing for 0
        scipy.io.savemat(folder / name, {
            "X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
            "y": y.reshape(n, 1).astype(label_dtype),
        })
    return {name: md5_file(folder / name) for name in SIZES}


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "svhn"
    return root, write_fake_svhn(root)


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize("label_dtype", [np.uint8, np.float64])
def test_round_trip_arrays_labels_and_classes(tmp_path: Path, label_dtype: type) -> None:
    table = write_fake_svhn(tmp_path, label_dtype)
    source = locate_svhn(tmp_path, download=False, md5s=table)
    assert (source.kind, source.verified, source.include_extra) == ("full", True, False)
    data = load_svhn(source)
    assert data.train_x.shape == (25, 3, 32, 32) and data.train_x.dtype == np.uint8
    assert data.test_x.shape == (15, 3, 32, 32) and data.test_y.dtype == np.int64
    assert data.classes == [str(d) for d in range(10)]
    raw = scipy.io.loadmat(tmp_path / TRAIN_FILE)
    # Image i, channel c, row r, column k is X[r, k, c, i].
    assert data.train_x[3, 2, 5, 7] == raw["X"][5, 7, 2, 3]
    np.testing.assert_array_equal(data.train_x[4].transpose(1, 2, 0), raw["X"][..., 4])
    expected = raw["y"].ravel().astype(np.int64) % 10  # 10 -> 0, 1..9 unchanged
    np.testing.assert_array_equal(data.train_y, expected)
    assert data.train_y[9] == 0 and sorted(set(data.test_y.tolist())) == list(range(10))


def test_extra_is_verified_and_appended_only_when_asked(fake) -> None:
    root, table = fake
    source = locate_svhn(root, download=False, include_extra=True, md5s=table)
    assert isinstance(source, SvhnSource) and source.as_dict()["include_extra"] is True
    data = load_svhn(source)
    assert len(data.train_y) == 35 and len(data.test_y) == 15
    extra = scipy.io.loadmat(root / EXTRA_FILE)["X"]
    np.testing.assert_array_equal(data.train_x[25:].transpose(2, 3, 1, 0), extra)
    # Without extra, its file is neither needed nor checked.
    (root / EXTRA_FILE).write_bytes(b"junk")
    assert len(load_svhn(locate_svhn(root, download=False, md5s=table)).train_y) == 25


def test_bad_labels_and_shapes_are_refused(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / TRAIN_FILE, {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.zeros((4, 1), np.uint8)})
    scipy.io.savemat(tmp_path / TEST_FILE, {"X": np.zeros((3, 32, 32, 4), np.uint8), "y": np.ones((4, 1), np.uint8)})
    source = SvhnSource(tmp_path, "subset", False, "")
    with pytest.raises(DataError, match=f"{TRAIN_FILE}: labels must be whole numbers 1..10"):
        load_svhn(source)
    scipy.io.savemat(tmp_path / TRAIN_FILE, {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.ones((4, 1), np.uint8)})
    with pytest.raises(DataError, match=rf"{TEST_FILE}: X must be uint8 of shape \(32, 32, 3, n\)"):
        load_svhn(source)


def test_normalisation_constants() -> None:
    assert svhn.SVHN_MEAN == (0.4377, 0.4438, 0.4728) and svhn.SVHN_STD == (0.1980, 0.2010, 0.1970)


# ----------------------------------------------------------------------------- verification


def test_official_table_is_the_default_and_matches_torchvision(fake) -> None:
    root, _ = fake
    with pytest.raises(DataError, match="checksum mismatch") as err:
        locate_svhn(root, download=False)
    assert OFFICIAL_MD5[TRAIN_FILE] in str(err.value) and OFFICIAL_MD5[TEST_FILE] in str(err.value)
    tv = pytest.importorskip("torchvision.datasets").SVHN
    assert {name: md5 for _, name, md5 in tv.split_list.values()} == OFFICIAL_MD5
    assert {url for url, _, _ in tv.split_list.values()} == {svhn.BASE_URL + name for name in OFFICIAL_MD5}


def test_corrupt_file_is_named_with_both_md5s(fake) -> None:
    root, table = fake
    path = root / TEST_FILE
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated
    found = md5_file(path)
    with pytest.raises(DataError) as err:
        locate_svhn(root, download=False, md5s=table)
    msg = str(err.value)
    assert str(path) in msg and table[TEST_FILE] in msg and found in msg
    assert "corrupt or truncated" in msg and "data.download: true" in msg and TRAIN_FILE not in msg.split(")")[0]
    with pytest.raises(DataError, match=f"{TEST_FILE} is truncated or corrupt"):
        locate_svhn(root, download=False, md5s=table, allow_unverified=True)


def test_unverified_readable_copy_is_a_subset_only_when_allowed(fake) -> None:
    root, _ = fake
    source = locate_svhn(root, download=False, allow_unverified=True)
    assert source.kind == "subset" and not source.verified
    assert "NOT the official SVHN" in source.note and "25 training / 15 test" in source.note


# ----------------------------------------------------------------------------- missing data


def test_missing_dataset_error_names_dataset_paths_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        locate_svhn(tmp_path, download=False)
    msg = str(err.value)
    assert "SVHN not found" in msg and str(tmp_path / TRAIN_FILE) in msg and str(tmp_path / TEST_FILE) in msg
    assert "data.download: true" in msg and svhn.BASE_URL in msg
    write_fake_svhn(tmp_path)
    (tmp_path / TEST_FILE).unlink()
    with pytest.raises(DataError, match=f"missing {tmp_path / TEST_FILE}\\. To fix"):
        locate_svhn(tmp_path, download=False)
    with pytest.raises(DataError, match="no root folder given"):
        locate_svhn(None, download=False)


# ----------------------------------------------------------------------------- download


def test_download_from_file_url_fetches_only_missing_files(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    table = write_fake_svhn(mirror)
    root = tmp_path / "data"
    source = locate_svhn(root, download=True, md5s=table, base_url=mirror.as_uri() + "/")
    assert source.verified and "downloaded" in source.note
    assert sorted(p.name for p in root.iterdir()) == sorted([TRAIN_FILE, TEST_FILE])  # no extra, no temp files
    assert len(load_svhn(source).train_y) == 25
    source = locate_svhn(root, download=True, include_extra=True, md5s=table, base_url=mirror.as_uri() + "/")
    assert len(load_svhn(source).train_y) == 35 and (root / EXTRA_FILE).is_file()


def test_bad_download_leaves_nothing_behind(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    table = write_fake_svhn(mirror)
    root = tmp_path / "data"
    with pytest.raises(DataError, match=rf"{TRAIN_FILE} from .* has md5 \w+, expected {OFFICIAL_MD5[TRAIN_FILE]}"):
        locate_svhn(root, download=True, base_url=mirror.as_uri() + "/")  # official md5s: the fakes fail
    assert list(root.iterdir()) == []
    (mirror / TEST_FILE).unlink()
    with pytest.raises(DataError, match=f"downloading SVHN from .*{TEST_FILE} failed.*When offline"):
        locate_svhn(root, download=True, md5s=table, base_url=mirror.as_uri() + "/")
    assert [p.name for p in root.iterdir()] == [TRAIN_FILE]  # the verified file stays, no partial one
