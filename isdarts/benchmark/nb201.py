"""NAS-Bench-201 200-epoch accuracies, looked up offline from the table shipped with the package.

The official benchmark file is 2.2 GB and needs tens of GB of RAM to open; every search
only needs the six accuracies of one cell, so we ship those (see ``data/PROVENANCE.md``)
and rebuild them from the official file with :mod:`isdarts.benchmark.converter`.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from isdarts.errors import BenchmarkError, GenotypeError
from isdarts.io import file_digest
from isdarts.spaces.nb201.genotype import Nb201Genotype

NB201_NUM_ARCHS = 15_625
TABLE_FILENAME = "nb201_acc200.csv"
# The shipped table's digest (data/PROVENANCE.md): an edited accuracy still parses, so only this catches it.
SHIPPED_SHA256 = "6ef7fc2b6c34dc72a18f3c3c882a94fabbd8e4c0b33728462d7d26708b4bcaf4"

# Column names of the shipped CSV, in file order; the converter writes exactly these.
CSV_COLUMNS: tuple[str, ...] = (
    "index",
    "arch_str",
    "n_seeds",
    "cifar10_valid_valid",
    "cifar10_test",
    "cifar100_valid",
    "cifar100_test",
    "imagenet16_valid",
    "imagenet16_test",
    "cifar100_valtest",
    "imagenet16_valtest",
    "params_cifar10_M",
    "params_cifar100_M",
    "params_imagenet16_M",
)

ACCURACY_KEYS: tuple[str, ...] = (
    "cifar10_valid",
    "cifar10_test",
    "cifar100_valid",
    "cifar100_test",
    "imagenet16_valid",
    "imagenet16_test",
)
# Human labels keyed by ACCURACY_KEYS (same order), e.g. ACCURACY_LABELS["cifar10_test"] == "C10 test".
ACCURACY_LABELS: dict[str, str] = {
    "cifar10_valid": "C10 valid",
    "cifar10_test": "C10 test",
    "cifar100_valid": "C100 valid",
    "cifar100_test": "C100 test",
    "imagenet16_valid": "IN16-120 valid",
    "imagenet16_test": "IN16-120 test",
}
# Record field -> CSV column; only C10 valid is renamed (the CSV says which split it was trained on).
_CSV_COLUMN_OF = {key: ("cifar10_valid_valid" if key == "cifar10_valid" else key) for key in ACCURACY_KEYS}

_FIX = (
    f"Reinstall isdarts (the table ships as package data isdarts/benchmark/data/{TABLE_FILENAME}), "
    "or rebuild it from NAS-Bench-201-v1_0-e61699.pth with isdarts.benchmark.converter.build_table_from_api."
)



@dataclass(frozen=True)
class Nb201Record:
    """One NB201 cell: index, arch string and 200-epoch accuracies in percent (mean over seeds)."""

    index: int
    arch_str: str
    cifar10_valid: float
    cifar10_test: float
    cifar100_valid: float
    cifar100_test: float
    imagenet16_valid: float
    imagenet16_test: float

    def accuracies(self) -> dict[str, float]:
        """The six accuracies keyed by ``ACCURACY_KEYS``, in that order."""
        return {key: getattr(self, key) for key in ACCURACY_KEYS}

    @property
    def genotype(self) -> Nb201Genotype:
        return Nb201Genotype.from_arch_str(self.arch_str)


def default_table_path() -> Path:
    """Where the shipped CSV lives inside the installed package."""
    # The package is installed as plain files (no zip), so the resource is a real path.
    return Path(str(resources.files("isdarts.benchmark").joinpath("data", TABLE_FILENAME)))


class Nb201Table:
    """All 15,625 NB201 cells, validated once on load, indexed by arch string."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_table_path()
        if path is None:
            _check_shipped(self.path)
        self._records = _read_table(self.path)
        self._by_arch = {rec.arch_str: rec for rec in self._records}

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Nb201Record]:
        return iter(self._records)

    def records(self) -> tuple[Nb201Record, ...]:
        """All records, in NB201 index order."""
        return self._records

    def by_index(self, index: int) -> Nb201Record:
        """Record of NB201 architecture ``index`` (0..15624)."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self._records):
            raise BenchmarkError(f"NB201 index {index!r} is out of range 0..{len(self._records) - 1}")
        return self._records[index]

    def lookup(self, arch: str | Nb201Genotype) -> Nb201Record:
        """Record of a cell given as an arch string or genotype; malformed strings raise GenotypeError."""
        if isinstance(arch, str):
            # Parsing first turns "not found" into a message naming the bad op or edge.
            arch = Nb201Genotype.from_arch_str(arch)
        if not isinstance(arch, Nb201Genotype):
            raise GenotypeError(f"expected an NB201 arch string or Nb201Genotype, got {type(arch).__name__}")
        arch_str = arch.to_arch_str()
        try:
            return self._by_arch[arch_str]
        except KeyError:
            raise BenchmarkError(
                f"{arch_str} is a valid NB201 cell but is missing from {self.path}"
            ) from None

    def optimum(self, key: str) -> Nb201Record:
        """The record with the highest value of accuracy ``key`` (first index on ties)."""
        if key not in ACCURACY_KEYS:
            raise KeyError(f"unknown accuracy key {key!r}; choose one of {', '.join(ACCURACY_KEYS)}")
        return max(self._records, key=lambda rec: getattr(rec, key))


def _check_shipped(path: Path) -> None:
    """Refuse a shipped table whose bytes differ from the ones published with the package."""
    if not path.is_file():
        raise BenchmarkError(f"NB201 table not found at {path}. {_FIX}")
    digest = file_digest(path)
    if digest != SHIPPED_SHA256:
        raise BenchmarkError(
            f"NB201 table {path} has sha256 {digest}, not the shipped table's {SHIPPED_SHA256} "
            f"(data/PROVENANCE.md): it was edited or damaged, so its accuracies cannot be trusted. {_FIX}"
        )


def _read_table(path: Path) -> tuple[Nb201Record, ...]:
    """Read and check the CSV; every failure names the file, the row and the fix."""
    if not path.is_file():
        raise BenchmarkError(f"NB201 table not found at {path}. {_FIX}")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = tuple(next(reader, ()))
            if header != CSV_COLUMNS:
                raise BenchmarkError(
                    f"NB201 table {path} has an unexpected header {list(header)!r}; "
                    f"expected {list(CSV_COLUMNS)!r}. {_FIX}"
                )
            records = tuple(_parse_row(path, line, row) for line, row in enumerate(reader, start=2))
    except UnicodeDecodeError as exc:
        raise BenchmarkError(f"NB201 table {path} is not UTF-8 text ({exc}). {_FIX}") from exc
    if len(records) != NB201_NUM_ARCHS:
        raise BenchmarkError(
            f"NB201 table {path} has {len(records)} rows, expected {NB201_NUM_ARCHS} "
            f"(file truncated?). {_FIX}"
        )
    if len({rec.arch_str for rec in records}) != NB201_NUM_ARCHS:
        raise BenchmarkError(f"NB201 table {path} lists some arch strings more than once. {_FIX}")
    return records


def _parse_row(path: Path, line: int, row: list[str]) -> Nb201Record:
    where = f"NB201 table {path}, line {line}"
    if len(row) != len(CSV_COLUMNS):
        raise BenchmarkError(f"{where}: {len(row)} fields, expected {len(CSV_COLUMNS)}. {_FIX}")
    cells = dict(zip(CSV_COLUMNS, row, strict=True))
    try:
        index = int(cells["index"])
        accs = [float(cells[_CSV_COLUMN_OF[key]]) for key in ACCURACY_KEYS]
    except ValueError as exc:
        raise BenchmarkError(f"{where}: {exc}. {_FIX}") from exc
    if index != line - 2:
        raise BenchmarkError(f"{where}: index {index}, expected {line - 2} (rows out of order). {_FIX}")
    if not all(math.isfinite(a) and 0.0 <= a <= 100.0 for a in accs):
        raise BenchmarkError(f"{where}: accuracies {accs} are not percentages in [0, 100]. {_FIX}")
    try:
        geno = Nb201Genotype.from_arch_str(cells["arch_str"])
    except GenotypeError as exc:
        raise BenchmarkError(f"{where}: {exc}. {_FIX}") from exc
    if geno.to_arch_str() != cells["arch_str"]:
        raise BenchmarkError(f"{where}: arch string {cells['arch_str']!r} is not in canonical form. {_FIX}")
    return Nb201Record(index, cells["arch_str"], *accs)


@functools.cache
def default_table() -> Nb201Table:
    """The shipped table, loaded once per process."""
    return Nb201Table()


def lookup(arch: str | Nb201Genotype) -> Nb201Record:
    """Shortcut for ``default_table().lookup(arch)``."""
    return default_table().lookup(arch)
