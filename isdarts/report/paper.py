"""The IS-DARTS paper's published numbers (AAAI 2024), typed and checked once on import.

The numbers lie in ``paper_numbers.yaml`` beside this module (its header names the source; the paper's "–" is
null there and None here). Every row must name exactly its type's fields and every cell must have its field's
type, checked as the results files are (``isdarts.records``), so a slip in the file fails on import rather than
as a wrong verdict. Means and stds are kept apart so reports can compare means and print both. The file also says
which of our methods each table reproduces and judges against which paper row (a table's ``ours``), and which
searches each figure is redrawn from, so the report's code names no method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

from isdarts.benchmark.nb201 import ACCURACY_KEYS
from isdarts.errors import ReportError
from isdarts.records import At, parse_value
from isdarts.registry import METHODS

SOURCE = "isdarts/report/paper_numbers.yaml"


@dataclass(frozen=True)
class PaperCell:
    """One published number: its mean and, where the paper gives one, its std (both may be None)."""

    mean: float | None
    std: float | None = None


@dataclass(frozen=True)
class Table1Row:
    """NB201 row: search cost in GPU-hours (RTX 3090) and one cell per accuracy key."""

    method: str
    cost_hours: float | None
    cells: Mapping[str, PaperCell]


@dataclass(frozen=True)
class AblationRow:
    """Table A.1: single accuracies (no std) per NB201 accuracy key."""

    method: str
    accuracies: Mapping[str, float]


@dataclass(frozen=True)
class Table2Row:
    """DARTS space on CIFAR-10: test error (%), params (M), cost in GPU-days, method family."""

    architecture: str
    test_error: PaperCell
    params_m: PaperCell
    cost_gpu_days: float | None
    method: str


@dataclass(frozen=True)
class Table3Row:
    """ImageNet mobile setting: top-1/top-5 error (%), params (M), cost in GPU-days.

    ``searched_on`` is "CIFAR-10" for the paper's "(C)", "ImageNet" for "(I)", else None.
    """

    architecture: str
    top1_error: float
    top5_error: float | None
    params_m: float | None
    cost_gpu_days: float | None
    method: str
    searched_on: str | None = None


@dataclass(frozen=True)
class ShrinkRateRow:
    """Table A.2: shrink rate, steps S = 1/rate, interval in epochs (None for "/"), test error (%)."""

    label: str
    rate: float
    steps: int
    interval_epochs: int | None
    test_error: float


@dataclass(frozen=True)
class PaperClaims:
    """Numbers the paper states in its text rather than in a table (the data file says where)."""

    isdarts_gain_over_darts_pct: float
    isdarts_cost_reduction_pct: float
    c100_search_cifar100_valid: float
    c100_search_cifar100_test: float
    table2_isdarts_accuracy: PaperCell
    table3_isdarts_top1_accuracy: float


@dataclass(frozen=True)
class FigureRuns:
    """The searches each of the paper's figures is redrawn from, by figure file stem: run folders under runs/
    (``<space>[/<stage>]/<method>``), whose lowest finished seed is drawn."""

    nb201_iim_over_epochs: str  # Fig. 4 / A.3: IS-DARTS's IIM over epochs
    darts_iim_over_epochs: str
    nb201_alpha_vs_iim: tuple[str, str]  # Fig. A.4: (the run whose softmax(α), the run whose importance)

    def __post_init__(self) -> None:
        for f in fields(self):
            runs = getattr(self, f.name)
            for run in (runs,) if isinstance(runs, str) else runs:
                if run.rpartition("/")[2] not in METHODS:
                    raise ReportError(f"{SOURCE}: figures.{f.name}: {run!r} is not a run folder "
                                      f"<space>[/<stage>]/<method> of a method in isdarts.registry")


T = TypeVar("T")


def _typed(value: Any, hint: Any, at: At, key: str) -> Any:
    """``value`` checked against ``hint``; a PaperCell is given as [mean, std] or as a bare mean."""
    if hint is not PaperCell:
        return parse_value(value, hint, at, key)
    number = parse_value(value, float | tuple[float, float | None], at, key)
    return PaperCell(*number) if isinstance(number, tuple) else PaperCell(number)


def _build(kind: type[T], given: Mapping[str, Any], where: str) -> T:
    """``kind`` from one value per field (a Mapping field: one per accuracy key), and no other key."""
    hints, at = get_type_hints(kind), At(SOURCE, where)
    keys = {f.name: ACCURACY_KEYS if get_origin(hints[f.name]) is Mapping else None for f in fields(kind)}
    expected = sorted(key for name, accuracy_keys in keys.items() for key in accuracy_keys or (name,))
    if sorted(given) != expected:
        raise ReportError(f"{SOURCE}: {where} has keys {sorted(given)}; expected {expected}")
    return kind(**{
        name: _typed(given[name], hints[name], at, name) if accuracy_keys is None
        else MappingProxyType({k: _typed(given[k], get_args(hints[name])[1], at, k) for k in accuracy_keys})
        for name, accuracy_keys in keys.items()})


def _table(data: Mapping[str, Any], name: str, kind: type[T]) -> tuple[T, ...]:
    """The rows of table ``name`` as ``kind``: its columns name kind's fields, and each row has one value per column."""
    columns, rows = data[name]["columns"], []
    for i, row in enumerate(data[name]["rows"]):
        if not isinstance(row, list) or len(row) != len(columns):
            raise ReportError(f"{SOURCE}: {name}.rows[{i}] does not hold one value per column: {row!r}")
        rows.append(_build(kind, dict(zip(columns, row, strict=True)), f"{name}.rows[{i}]"))
    return tuple(rows)


def _ours(data: Mapping[str, Any], name: str, rows: tuple[Any, ...], label: str) -> Mapping[str, str | None]:
    """Table ``name``'s ``ours``: our method -> the label (its ``label`` field) of the paper row it is judged against
    (None: no such row), in the file's order; every method a registry name, every label one of the table's rows."""
    ours = parse_value(data[name].get("ours"), Mapping[str, str | None], At(SOURCE, name), "ours")
    labels = [getattr(row, label) for row in rows]
    for method, row in ours.items():
        if method not in METHODS:
            raise ReportError(f"{SOURCE}: {name}.ours: unknown method {method!r}; expected one of {', '.join(METHODS)}")
        if row is not None and row not in labels:
            raise ReportError(f"{SOURCE}: {name}.ours.{method}: {row!r} is not a row of {name}")
    return ours


_DATA = yaml.safe_load(resources.files(__package__).joinpath("paper_numbers.yaml").read_text(encoding="utf-8"))

TABLE1 = _table(_DATA, "table1", Table1Row)
TABLE1_COST_UNIT: str = _typed(_DATA["table1"]["cost_unit"], str, At(SOURCE, "table1"), "cost_unit")
TABLE1_SEEDS: int = _typed(_DATA["table1"]["seeds"], int, At(SOURCE, "table1"), "seeds")  # mean±std of 4 seeds
TABLE2 = _table(_DATA, "table2", Table2Row)
TABLE2_COST_UNIT: str = _typed(_DATA["table2"]["cost_unit"], str, At(SOURCE, "table2"), "cost_unit")
TABLE3 = _table(_DATA, "table3", Table3Row)
TABLE3_COST_UNIT: str = _typed(_DATA["table3"]["cost_unit"], str, At(SOURCE, "table3"), "cost_unit")
TABLE3_MADDS_CONVENTION: str = _typed(_DATA["table3"]["madds_convention"], str, At(SOURCE, "table3"),
                                      "madds_convention")
TABLE_A1 = _table(_DATA, "table_a1", AblationRow)
TABLE_A2 = _table(_DATA, "table_a2", ShrinkRateRow)
CLAIMS = _build(PaperClaims, _DATA["claims"], "claims")
# Our method -> the label of the paper row it is judged against (None: none); Tables 1 and A.1 print them in order.
TABLE1_OURS = _ours(_DATA, "table1", TABLE1, "method")
# Table 1 rows copied from the NAS-Bench-201 paper (their cost is not the paper's RTX 3090 timing).
TABLE1_COPIED: tuple[str, ...] = _typed(_DATA["table1"]["copied_from_nb201_paper"], tuple[str, ...],
                                        At(SOURCE, "table1"), "copied_from_nb201_paper")
if not set(TABLE1_COPIED) <= {row.method for row in TABLE1}:
    raise ReportError(f"{SOURCE}: table1.copied_from_nb201_paper names rows Table 1 lacks: {TABLE1_COPIED}")
TABLE2_OURS = _ours(_DATA, "table2", TABLE2, "architecture")
TABLE3_OURS = _ours(_DATA, "table3", TABLE3, "architecture")
TABLE_A1_OURS = _ours(_DATA, "table_a1", TABLE_A1, "method")
FIGURES = _build(FigureRuns, _DATA["figures"], "figures")
