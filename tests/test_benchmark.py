"""The shipped NB201 table: known values, lookups, and errors for missing or corrupt files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from isdarts.benchmark import (
    ACCURACY_KEYS,
    ACCURACY_LABELS,
    BenchmarkError,
    Nb201Record,
    Nb201Table,
    default_table,
    lookup,
)
from isdarts.benchmark.nb201 import CSV_COLUMNS, default_table_path
from isdarts.errors import GenotypeError
from isdarts.spaces.nb201.genotype import Nb201Genotype

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
SHIPPED_SHA256 = "6ef7fc2b6c34dc72a18f3c3c882a94fabbd8e4c0b33728462d7d26708b4bcaf4"
SHARED_COPY = Path("/work/shared/data/nb201/nb201_acc200.csv")

# Values from the data README, checked there against the IS-DARTS and NB201 papers.
KNOWN = {
    9930: (BEST, (91.5533, 94.3633, 73.4933, 73.5133, 46.3667, 46.3444)),
    1835: (ALL_SKIP, (39.7693, 54.2967, 15.0333, 15.6067, 16.4333, 16.3222)),
}


def _assert_accuracies(record: Nb201Record, expected: tuple[float, ...]) -> None:
    got = tuple(round(v, 4) for v in record.accuracies().values())
    assert got == expected


def test_keys_and_labels() -> None:
    assert ACCURACY_KEYS == (
        "cifar10_valid",
        "cifar10_test",
        "cifar100_valid",
        "cifar100_test",
        "imagenet16_valid",
        "imagenet16_test",
    )
    assert list(ACCURACY_LABELS) == list(ACCURACY_KEYS)
    assert ACCURACY_LABELS["imagenet16_test"] == "IN16-120 test"
    assert list(ACCURACY_LABELS.values()) == [
        "C10 valid",
        "C10 test",
        "C100 valid",
        "C100 test",
        "IN16-120 valid",
        "IN16-120 test",
    ]


def test_shipped_csv_is_the_verified_copy() -> None:
    data = default_table_path().read_bytes()
    assert hashlib.sha256(data).hexdigest() == SHIPPED_SHA256
    if SHARED_COPY.is_file():
        assert data == SHARED_COPY.read_bytes()


def test_table_loads_all_cells_in_index_order() -> None:
    table = default_table()
    assert default_table() is table  # cached
    assert len(table) == 15_625
    assert [rec.index for rec in table.records()] == list(range(15_625))
    assert list(table) == list(table.records())


@pytest.mark.parametrize("index", sorted(KNOWN))
def test_known_cells(index: int) -> None:
    arch_str, expected = KNOWN[index]
    table = default_table()
    record = lookup(arch_str)
    assert record.index == index
    assert record.arch_str == arch_str
    _assert_accuracies(record, expected)
    assert table.lookup(Nb201Genotype.from_arch_str(arch_str)) == record
    assert table.by_index(index) == record
    assert record.genotype == Nb201Genotype.from_arch_str(arch_str)
    assert list(record.accuracies()) == list(ACCURACY_KEYS)


def test_optimum_rows_match_the_readme() -> None:
    table = default_table()
    expected_index = {
        "cifar10_valid": 6111,
        "cifar10_test": 6111,
        "cifar100_valid": 9930,
        "cifar100_test": 9930,
        "imagenet16_valid": 10676,
        "imagenet16_test": 857,
    }
    for key, index in expected_index.items():
        best = table.optimum(key)
        assert best.index == index, key
        assert getattr(best, key) == max(getattr(rec, key) for rec in table)
    assert round(table.optimum("cifar10_test").cifar10_test, 4) == 94.3733
    with pytest.raises(KeyError, match="cifar10_valid"):
        table.optimum("c10")


def test_lookup_rejects_unknown_op_naming_it() -> None:
    bad = BEST.replace("skip_connect~0", "sep_conv_3x3~0")
    with pytest.raises(GenotypeError) as err:
        lookup(bad)
    assert "'sep_conv_3x3'" in str(err.value)
    assert "edge 3<-0" in str(err.value)


def test_lookup_rejects_bad_edge_naming_it() -> None:
    bad = BEST.replace("nor_conv_3x3~2|", "nor_conv_3x3~4|")
    with pytest.raises(GenotypeError) as err:
        lookup(bad)
    assert "edge 3<-4" in str(err.value)


def test_lookup_rejects_other_types() -> None:
    with pytest.raises(GenotypeError, match="int"):
        lookup(9930)  # type: ignore[arg-type]
    with pytest.raises(BenchmarkError, match="out of range"):
        default_table().by_index(15_625)


# ------------------------------------------------------------------ missing / corrupt files
def _shipped_lines() -> list[str]:
    return default_table_path().read_text(encoding="utf-8").splitlines(keepends=True)


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "nb201_acc200.csv"
    path.write_text("".join(lines), encoding="utf-8", newline="")
    return path


def test_explicit_path_loads(tmp_path: Path) -> None:
    table = Nb201Table(_write(tmp_path, _shipped_lines()))
    _assert_accuracies(table.lookup(BEST), KNOWN[9930][1])


def test_missing_file_names_path_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "nb201_acc200.csv"
    with pytest.raises(BenchmarkError) as err:
        Nb201Table(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "not found" in msg
    assert "Reinstall isdarts" in msg and "build_table_from_api" in msg


def test_wrong_header(tmp_path: Path) -> None:
    lines = _shipped_lines()
    lines[0] = lines[0].replace("cifar10_test", "c10_test")
    path = _write(tmp_path, lines)
    with pytest.raises(BenchmarkError) as err:
        Nb201Table(path)
    assert str(path) in str(err.value)
    assert "header" in str(err.value)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="header"):
        Nb201Table(_write(tmp_path, []))


def test_truncated_file(tmp_path: Path) -> None:
    path = _write(tmp_path, _shipped_lines()[:-10])
    with pytest.raises(BenchmarkError) as err:
        Nb201Table(path)
    assert "15615 rows, expected 15625" in str(err.value)
    assert str(path) in str(err.value)


def test_bad_number(tmp_path: Path) -> None:
    lines = _shipped_lines()
    lines[101] = lines[101].replace(",", ",x", 3)  # corrupts n_seeds/accuracy fields of index 100
    with pytest.raises(BenchmarkError, match="line 102"):
        Nb201Table(_write(tmp_path, lines))


def test_short_row(tmp_path: Path) -> None:
    lines = _shipped_lines()
    lines[5] = lines[5].split(",", 3)[0] + "\r\n"
    with pytest.raises(BenchmarkError, match=f"line 6: 1 fields, expected {len(CSV_COLUMNS)}"):
        Nb201Table(_write(tmp_path, lines))


def test_rows_out_of_order(tmp_path: Path) -> None:
    lines = _shipped_lines()
    lines[1], lines[2] = lines[2], lines[1]
    with pytest.raises(BenchmarkError, match="rows out of order"):
        Nb201Table(_write(tmp_path, lines))


def test_bad_arch_string_in_table(tmp_path: Path) -> None:
    lines = _shipped_lines()
    lines[1] = lines[1].replace("avg_pool_3x3~0", "avg_pool_5x5~0", 1)
    with pytest.raises(BenchmarkError) as err:
        Nb201Table(_write(tmp_path, lines))
    assert "line 2" in str(err.value) and "'avg_pool_5x5'" in str(err.value)


def test_accuracy_out_of_range(tmp_path: Path) -> None:
    lines = _shipped_lines()
    fields = lines[1].split(",")
    fields[4] = "185.863333"  # cifar10_test of index 0
    lines[1] = ",".join(fields)
    with pytest.raises(BenchmarkError, match=r"line 2: .*\[0, 100\]"):
        Nb201Table(_write(tmp_path, lines))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "nb201_acc200.csv"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BenchmarkError, match="UTF-8"):
        Nb201Table(path)
