"""isdarts.data.cifar: locating, verifying, reading and saving CIFAR-10."""

from __future__ import annotations

import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from fakes import write_fake_cifar10

from isdarts.data import cifar
from isdarts.data.cifar import (
    CifarSource,
    load_cifar10,
    load_prepared,
    locate_cifar10,
    md5_file,
    save_prepared,
)
from isdarts.errors import DataError

BATCHES = "cifar-10-batches-py"


def _fake_source(root: Path) -> CifarSource:
    return locate_cifar10(root, download=False, subset_fallback=None, allow_subset=True)


# ----------------------------------------------------------------------------- the real subset


def test_shared_subset_loads_as_subset(shared_cifar_subset: Path) -> None:
    source = locate_cifar10(None, download=False, subset_fallback=shared_cifar_subset)
    assert source.kind == "subset"
    assert source.verified  # matches the md5 table in the subset's README
    assert "5,551" in source.note and "not comparable" in source.note.lower()

    data = load_cifar10(source)
    assert data.train_x.shape == (5551, 3, 32, 32) and data.train_x.dtype == np.uint8
    assert data.test_x.shape == (1017, 3, 32, 32)
    assert data.train_y.dtype == np.int64
    assert data.classes[6] == "frog"
    # Known values of the official files (README "Checks made").
    assert data.train_y[:5].tolist() == [6, 9, 9, 4, 1]
    assert data.test_y[:5].tolist() == [3, 8, 8, 0, 6]
    assert data.train_x[0, 0, 0, :3].tolist() == [59, 43, 50]  # red plane, first row
    train_counts = np.bincount(data.train_y, minlength=10)
    test_counts = np.bincount(data.test_y, minlength=10)
    assert train_counts[[0, 6, 8, 9]].tolist() == [547, 553, 588, 544]
    assert test_counts[[0, 5, 6]].tolist() == [105, 87, 114]


def test_subset_under_root_is_refused_unless_allowed(shared_cifar_subset: Path) -> None:
    with pytest.raises(DataError, match="data_batch_1.*differ"):
        locate_cifar10(shared_cifar_subset, download=False, subset_fallback=None)
    # Named as the fallback, or explicitly allowed, it is accepted, and never as "full".
    for kwargs in ({"subset_fallback": shared_cifar_subset}, {"subset_fallback": None, "allow_subset": True}):
        assert locate_cifar10(shared_cifar_subset, download=False, **kwargs).kind == "subset"


# ----------------------------------------------------------------------------- synthetic data


def test_fake_data_round_trip(tiny_cifar_dir: Path) -> None:
    source = _fake_source(tiny_cifar_dir)
    assert source.kind == "subset" and not source.verified
    assert source.path == tiny_cifar_dir / BATCHES
    data = load_cifar10(source)
    assert data.train_x.shape == (100, 3, 32, 32) and data.test_x.shape == (30, 3, 32, 32)
    # Compare with an independent read of the raw file: row = 1024 R, 1024 G, 1024 B.
    with open(source.path / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    np.testing.assert_array_equal(data.train_x[20:40].reshape(20, 3072), raw[b"data"])
    assert data.train_y[20:40].tolist() == raw[b"labels"]
    assert data.classes == list(cifar.CLASSES)
    assert set(raw) == {b"batch_label", b"labels", b"data", b"filenames"}


def test_fake_data_is_learnable(tmp_path: Path) -> None:
    """Nearest class mean, fitted on train, must beat chance by far on test."""
    data = load_cifar10(_fake_source(write_fake_cifar10(tmp_path, n_per_batch=50, n_test=100)))
    feats = lambda x: x.reshape(len(x), -1).astype(np.float32)  # noqa: E731
    means = np.stack([feats(data.train_x[data.train_y == c]).mean(0) for c in range(10)])
    dists = ((feats(data.test_x)[:, None] - means[None]) ** 2).sum(-1)
    assert (dists.argmin(1) == data.test_y).mean() > 0.5


def test_matching_md5s_mean_full(tiny_cifar_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_cifar_dir / BATCHES
    monkeypatch.setattr(cifar, "OFFICIAL_MD5", {n: md5_file(folder / n) for n in cifar.ALL_FILES})
    source = locate_cifar10(tiny_cifar_dir, download=False, subset_fallback=None)
    assert (source.kind, source.verified) == ("full", True)
    # The batches folder itself is accepted as root too.
    assert locate_cifar10(folder, download=False, subset_fallback=None).path == folder


# ----------------------------------------------------------------------------- bad files


def _rewrite(path: Path, **changes: object) -> None:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    d.update({k.encode(): v for k, v in changes.items()})
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated or corrupt"),
        (lambda p: p.write_bytes(b"not a pickle at all"), "truncated or corrupt"),
        (lambda p: _rewrite(p, data=np.zeros((20, 3000), np.uint8)), r"shape \(n, 3072\)"),
        (lambda p: _rewrite(p, data=np.zeros((20, 3072), np.float32)), r"uint8"),
        (lambda p: _rewrite(p, labels=[0] * 19), "19 labels for 20 images"),
        (lambda p: _rewrite(p, labels=[12] * 20), "outside 0..9"),
        (lambda p: p.write_bytes(pickle.dumps({b"labels": []}, protocol=2)), "lacks key"),
        (lambda p: p.write_bytes(pickle.dumps([1, 2], protocol=2)), "not a CIFAR batch dict"),
        (lambda p: p.write_bytes(pickle.dumps({b"x": _Evil()}, protocol=2)), "unexpected global"),
    ],
    ids=["truncated", "garbage", "wrong-shape", "wrong-dtype", "label-count", "label-range",
         "missing-key", "not-a-dict", "code-in-pickle"],
)
def test_bad_batch_names_the_file(tiny_cifar_dir: Path, damage, message: str) -> None:
    path = tiny_cifar_dir / BATCHES / "data_batch_3"
    damage(path)
    with pytest.raises(DataError, match=message) as err:
        load_cifar10(_fake_source(tiny_cifar_dir))
    assert str(path) in str(err.value)


def test_malformed_files_are_reported_before_md5_mismatch(tiny_cifar_dir: Path) -> None:
    path = tiny_cifar_dir / BATCHES / "test_batch"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="test_batch is truncated"):
        locate_cifar10(tiny_cifar_dir, download=False, subset_fallback=None)


def test_incomplete_folder_lists_missing_files(tiny_cifar_dir: Path) -> None:
    (tiny_cifar_dir / BATCHES / "data_batch_4").unlink()
    with pytest.raises(DataError, match="incomplete: missing data_batch_4"):
        locate_cifar10(tiny_cifar_dir, download=False, subset_fallback=None)


# ----------------------------------------------------------------------------- missing data


def test_missing_without_download_or_fallback_lists_paths(tmp_path: Path) -> None:
    root, fallback = tmp_path / "nowhere", tmp_path / "no-subset"
    with pytest.raises(DataError) as err:
        locate_cifar10(root, download=False, subset_fallback=fallback)
    msg = str(err.value)
    assert str(root / BATCHES) in msg and str(fallback / BATCHES) in msg
    assert "data.cifar10_root" in msg and "data.download" in msg
    with pytest.raises(DataError, match="no root and no fallback"):
        locate_cifar10(None, download=False, subset_fallback=None)


def test_missing_falls_back_to_subset(tmp_path: Path, tiny_cifar_dir: Path) -> None:
    source = locate_cifar10(tmp_path / "nowhere", download=False, subset_fallback=tiny_cifar_dir)
    assert source.kind == "subset" and "100 training / 30 test" in source.note


def _stub_torchvision(monkeypatch: pytest.MonkeyPatch, cifar10) -> None:
    """Stand in for torchvision (no network in tests, and importing it costs seconds)."""
    stub = types.SimpleNamespace(datasets=types.SimpleNamespace(CIFAR10=cifar10))
    monkeypatch.setitem(sys.modules, "torchvision", stub)


def test_download_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A download that yields files with the wrong md5s is rejected; one with the right md5s is full."""
    calls = []

    def fake_cifar10(root: str, train: bool, download: bool) -> None:
        calls.append((root, train, download))
        write_fake_cifar10(Path(root), n_per_batch=10, n_test=10)

    _stub_torchvision(monkeypatch, fake_cifar10)
    with pytest.raises(DataError, match="fails the official md5 check"):
        locate_cifar10(tmp_path / "dl", download=True, subset_fallback=None)
    assert calls == [(str(tmp_path / "dl"), True, True)]

    reference = write_fake_cifar10(tmp_path / "ref", n_per_batch=10, n_test=10)
    monkeypatch.setattr(cifar, "OFFICIAL_MD5", {n: md5_file(reference / n) for n in cifar.ALL_FILES})
    source = locate_cifar10(tmp_path / "dl2", download=True, subset_fallback=None)
    assert (source.kind, source.verified) == ("full", True)
    # Naming the batches folder itself downloads into its parent, not one level deeper.
    source = locate_cifar10(tmp_path / "dl3" / BATCHES, download=True, subset_fallback=None)
    assert calls[-1][0] == str(tmp_path / "dl3") and source.path == tmp_path / "dl3" / BATCHES


def test_download_failure_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    _stub_torchvision(monkeypatch, offline)
    with pytest.raises(DataError, match=r"network unreachable.*data.download: false"):
        locate_cifar10(tmp_path, download=True, subset_fallback=None)


# ----------------------------------------------------------------------------- prepared copy


def test_prepared_round_trip(tiny_cifar_dir: Path, tmp_path: Path) -> None:
    source = _fake_source(tiny_cifar_dir)
    data = load_cifar10(source)
    out = tmp_path / "prepared"
    written = save_prepared(data, source.as_dict(), out)
    assert sorted(p.name for p in out.iterdir()) == ["cifar10.npz", "manifest.json"]

    back, manifest = load_prepared(out)
    assert manifest == written == json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "subset" and manifest["source_path"] == str(source.path)
    assert manifest["counts"]["train"]["total"] == 100 and manifest["counts"]["test"]["total"] == 30
    assert sum(manifest["counts"]["test"]["per_class"].values()) == 30
    for name in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
    assert back.classes == data.classes

    # Saving again replaces the old output and leaves no temporary folders behind.
    save_prepared(data, {"kind": "again"}, out)
    assert load_prepared(out)[1]["kind"] == "again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar", "prepared"]


def test_prepared_detects_tampering_and_absence(tiny_cifar_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    with pytest.raises(DataError, match="dvc repro prepare_data"):
        load_prepared(out)
    save_prepared(load_cifar10(_fake_source(tiny_cifar_dir)), {}, out)
    npz = out / "cifar10.npz"
    raw = bytearray(npz.read_bytes())
    raw[-100] ^= 0xFF
    npz.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"sha256 .*dvc repro prepare_data"):
        load_prepared(out)
    (out / "manifest.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"manifest.json holds a JSON list, not a manifest; .*dvc repro prepare_data"):
        load_prepared(out)


def test_failed_save_leaves_nothing_half_written(
    tiny_cifar_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = load_cifar10(_fake_source(tiny_cifar_dir))
    out = tmp_path / "prepared"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(cifar.json, "dumps", boom)  # fails after the npz is already written
        with pytest.raises(OSError, match="disk full"):
            save_prepared(data, {}, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar"]

    # An earlier good output survives a failed overwrite untouched.
    save_prepared(data, {"kind": "good"}, out)
    with monkeypatch.context() as m:
        m.setattr(cifar.json, "dumps", boom)
        with pytest.raises(OSError):
            save_prepared(data, {"kind": "bad"}, out)
    assert load_prepared(out)[1]["kind"] == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar", "prepared"]
