"""Converter from the official NAS-Bench-201 file, run on a tiny file in the real format.

The fixture is built with nas_201_api's own ArchResults / ResultsCount and saved with
torch.save, exactly as the authors' file is laid out ('meta_archs', 'arch2infos' with
'less'/'full' ArchResults state dicts, 'evaluated_indexes'); nothing is mocked.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from pathlib import Path

import pytest
import torch
from nas_201_api import ArchResults, ResultsCount

from isdarts.benchmark import converter
from isdarts.benchmark.converter import (
    NB201_V1_0_FILENAME,
    NB201_V1_0_MD5_SUFFIX,
    LowMemoryWarning,
    build_table_from_api,
    file_md5,
)
from isdarts.benchmark.nb201 import CSV_COLUMNS, BenchmarkError, default_table_path
from isdarts.io import file_digest

ARCHS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
)
SEEDS = ((777, 888, 999), (777, 888), (888,))  # per architecture
# Eval sets each dataset carries in the authors' file (see nas_201_api.ArchResults.get_metrics).
EVAL_SETS = {
    "cifar10-valid": ("x-valid", "ori-test"),
    "cifar10": ("ori-test",),
    "cifar100": ("x-valid", "x-test", "ori-test"),
    "ImageNet16-120": ("x-valid", "x-test", "ori-test"),
}
CLASSES = {"cifar10-valid": 10, "cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
EPOCHS = 200
EARLY_ACC = 10.0  # every epoch but the last; the converter must report the last


def final_acc(arch: int, dataset: str, setname: str, seed: int) -> float:
    """A distinct, known final-epoch accuracy per (arch, dataset, set, seed)."""
    base = {"cifar10-valid": 80.0, "cifar10": 85.0, "cifar100": 60.0, "ImageNet16-120": 30.0}[dataset]
    offset = {"x-valid": 0.0, "x-test": 1.5, "ori-test": 3.0}[setname]
    return base + offset + 2.0 * arch + seed / 1000.0 + 1.0 / 3.0


def params_m(arch: int, dataset: str, seed: int) -> float:
    # Differs per seed so the test can tell that the first seed is used.
    return 0.1 + 0.25 * arch + CLASSES[dataset] / 10_000 + seed / 1e6


def _result(arch: int, dataset: str, seed: int, epochs: int) -> ResultsCount:
    config = {"name": "infer.tiny", "channel": 16, "num_cells": 5, "arch_str": ARCHS[arch]}
    config["class_num"] = CLASSES[dataset]
    train_accs = {e: 50.0 for e in range(epochs)}
    train_losses = {e: 1.0 for e in range(epochs)}
    params = params_m(arch, dataset, seed)
    res = ResultsCount(dataset, None, train_accs, train_losses, params, 80.0, config, seed, epochs, [0.01])
    full = epochs == EPOCHS
    accs, losses, times = {}, {}, {}
    for setname in EVAL_SETS[dataset] if full else ("x-valid",):
        for e in range(epochs):
            key = f"{setname}@{e}"
            accs[key] = final_acc(arch, dataset, setname, seed) if full and e == epochs - 1 else EARLY_ACC
            losses[key] = 1.0
            times[key] = 0.5
    res.update_eval(accs, losses, times)
    return res


def _arch_results(arch: int, full: bool) -> ArchResults:
    results = ArchResults(arch, ARCHS[arch])
    # 'less' (12 epochs) holds only cifar10-valid, as in v1_0.
    datasets = EVAL_SETS if full else ("cifar10-valid",)
    for dataset in datasets:
        for seed in SEEDS[arch]:
            results.update(dataset, seed, _result(arch, dataset, seed, EPOCHS if full else 12))
    return results


def _benchmark_dict() -> dict[str, object]:
    return {
        "meta_archs": list(ARCHS),
        "arch2infos": {
            i: {"less": _arch_results(i, False).state_dict(), "full": _arch_results(i, True).state_dict()}
            for i in range(len(ARCHS))
        },
        "evaluated_indexes": set(range(len(ARCHS))),
    }


@pytest.fixture(scope="module")
def tiny_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nb201") / "tiny-NAS-Bench-201.pth"
    torch.save(_benchmark_dict(), path)
    return path


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_converter_writes_the_known_values(tiny_pth: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "table.csv"
    assert build_table_from_api(tiny_pth, out, check_md5=False) == out
    header, rows = _read(out)
    assert tuple(header) == CSV_COLUMNS
    with default_table_path().open(newline="", encoding="utf-8") as fh:
        assert tuple(next(csv.reader(fh))) == CSV_COLUMNS  # same layout as the shipped table
    assert [row["index"] for row in rows] == ["0", "1", "2"]
    assert [row["arch_str"] for row in rows] == list(ARCHS)
    columns = {
        "cifar10_valid_valid": ("cifar10-valid", "x-valid"),
        "cifar10_test": ("cifar10", "ori-test"),
        "cifar100_valid": ("cifar100", "x-valid"),
        "cifar100_test": ("cifar100", "x-test"),
        "imagenet16_valid": ("ImageNet16-120", "x-valid"),
        "imagenet16_test": ("ImageNet16-120", "x-test"),
        "cifar100_valtest": ("cifar100", "ori-test"),
        "imagenet16_valtest": ("ImageNet16-120", "ori-test"),
    }
    for arch, row in enumerate(rows):
        assert row["n_seeds"] == str(len(SEEDS[arch]))
        for column, (dataset, setname) in columns.items():
            expected = _mean([final_acc(arch, dataset, setname, s) for s in SEEDS[arch]])
            assert row[column] == f"{expected:.6f}", (arch, column)
        first = SEEDS[arch][0]
        assert row["params_cifar10_M"] == f"{params_m(arch, 'cifar10', first):.6f}"
        assert row["params_cifar100_M"] == f"{params_m(arch, 'cifar100', first):.6f}"
        assert row["params_imagenet16_M"] == f"{params_m(arch, 'ImageNet16-120', first):.6f}"
    # Same line ends as the shipped file, and no temp file left beside the output.
    assert out.read_bytes().count(b"\r\n") == 4
    assert [p.name for p in out.parent.iterdir()] == ["table.csv"]


def test_spot_value_by_hand(tiny_pth: Path, tmp_path: Path) -> None:
    """One value worked out by hand, so the test does not only mirror its own formula."""
    out = build_table_from_api(tiny_pth, tmp_path / "t.csv", check_md5=False)
    _, rows = _read(out)
    # arch 1, cifar10-valid x-valid, seeds 777 and 888: 80 + 2 + 1/3 + (0.777 + 0.888) / 2
    assert rows[1]["cifar10_valid_valid"] == "83.165833"


def test_md5_mismatch_names_expected_and_actual(tiny_pth: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    with pytest.raises(BenchmarkError) as err:
        build_table_from_api(tiny_pth, out)
    msg = str(err.value)
    assert NB201_V1_0_MD5_SUFFIX in msg and NB201_V1_0_FILENAME in msg
    assert file_md5(tiny_pth) in msg
    assert "check_md5=False" in msg
    assert not out.exists()


def test_md5_suffix_match_passes(tiny_pth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(converter, "NB201_V1_0_MD5_SUFFIX", file_md5(tiny_pth)[-6:])
    out = build_table_from_api(tiny_pth, tmp_path / "t.csv")
    assert len(_read(out)[1]) == 3


def test_file_md5_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"nas-bench" * 1000)
    expected = hashlib.md5(b"nas-bench" * 1000).hexdigest()
    assert file_md5(path) == expected
    assert file_digest(path, "md5", chunk_bytes=7) == expected  # chunk boundaries change nothing


def test_missing_file_says_where_to_get_it(tmp_path: Path) -> None:
    path = tmp_path / NB201_V1_0_FILENAME
    with pytest.raises(BenchmarkError) as err:
        build_table_from_api(path, tmp_path / "t.csv")
    msg = str(err.value)
    assert str(path) in msg and "not found" in msg
    assert NB201_V1_0_FILENAME in msg and "D-X-Y/NAS-Bench-201" in msg


def test_foreign_file_is_rejected_and_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    out.write_text("previous table\n", encoding="utf-8")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a pickle")
    with pytest.raises(BenchmarkError, match="could not be read as a NAS-Bench-201 file"):
        build_table_from_api(junk, out, check_md5=False)
    wrong_keys = tmp_path / "wrong.pth"
    torch.save({"meta_archs": []}, wrong_keys)
    with pytest.raises(BenchmarkError, match=r"missing key\(s\) \['arch2infos', 'evaluated_indexes'\]"):
        build_table_from_api(wrong_keys, out, check_md5=False)
    assert out.read_text(encoding="utf-8") == "previous table\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pth", "t.csv", "wrong.pth"]


def test_missing_dataset_is_named(tmp_path: Path) -> None:
    data = _benchmark_dict()
    full = _arch_results(2, True)
    del full.dataset_seed["ImageNet16-120"]
    data["arch2infos"][2]["full"] = full.state_dict()  # type: ignore[index]
    path = tmp_path / "partial.pth"
    torch.save(data, path)
    with pytest.raises(BenchmarkError) as err:
        build_table_from_api(path, tmp_path / "t.csv", check_md5=False)
    assert "architecture 2" in str(err.value) and "ImageNet16-120" in str(err.value)
    assert not (tmp_path / "t.csv").exists()


def test_low_memory_warning_states_the_ram_needed(
    tiny_pth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(converter, "_LARGE_FILE_BYTES", 0)
    monkeypatch.setattr(converter, "available_ram_bytes", lambda: 4 << 30)
    with pytest.warns(LowMemoryWarning, match=f"{converter.RAM_NEEDED_GB} GB of free RAM"):
        build_table_from_api(tiny_pth, tmp_path / "t.csv", check_md5=False)


def test_small_files_skip_the_memory_check(
    tiny_pth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(converter, "available_ram_bytes", lambda: 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowMemoryWarning)
        build_table_from_api(tiny_pth, tmp_path / "t.csv", check_md5=False)


def test_command_line(tiny_pth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.csv"
    converter.main([str(tiny_pth), str(out), "--no-md5"])
    assert "wrote" in capsys.readouterr().out
    assert len(_read(out)[1]) == 3
