"""Table 1 rebuilt: NAS-Bench-201 searched on CIFAR-10, the paper's rows beside ours.

Reads the `lookup` stage's result files (one per method), summarises each method over its seeds,
judges every cell against the paper's number, and adds reference rows from the NB201 benchmark
table (the all-skip collapse cell and the per-column optimum). ``AccuracyRow`` and ``given_csv``
are shared with Table A.1, which prints the same benchmark numbers for the ablated methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from isdarts.benchmark.nb201 import ACCURACY_KEYS, ACCURACY_LABELS, Nb201Table, default_table
from isdarts.errors import ReportError
from isdarts.records import Nb201Result
from isdarts.report import render
from isdarts.report.paper import TABLE1, TABLE1_COST_UNIT, TABLE1_SEEDS, PaperCell, Table1Row, table1_row
from isdarts.report.render import MISSING, JudgedCell, fmt_csv_num, fmt_mean_std, fmt_num

# Reproduced methods, in the order their rows are printed (input order must not matter).
METHOD_LABELS: Mapping[str, str] = MappingProxyType({
    "darts1": "DARTS (1st)", "darts2": "DARTS (2nd)", "isdarts": "IS-DARTS", "lambda_darts": "Λ-DARTS",
})

# |our mean − paper mean| allowed per column, in percentage points of accuracy.
TOLERANCES: Mapping[str, float] = MappingProxyType({key: 1.0 for key in ACCURACY_KEYS})

# DARTS's collapse on NB201: every edge a skip connection (C10 test 54.30 in the paper).
ALL_SKIP_ARCH = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"

ACCURACY_COLUMNS = tuple(f"{key}_{part}" for key in ACCURACY_KEYS for part in ("mean", "std", "verdict"))
CSV_COLUMNS: tuple[str, ...] = ("source", "method", "profile", "n_runs", "cost", "cost_unit", *ACCURACY_COLUMNS)
ACCURACY_HEADER = ("Source", "Method", "Profile", "Runs", "Search cost", *(ACCURACY_LABELS[k] for k in ACCURACY_KEYS))
ACCURACY_ALIGN = "lllrr" + "r" * len(ACCURACY_KEYS)


def given_csv(cells: Mapping[str, PaperCell | float]) -> dict[str, str]:
    """The accuracy cells, by CSV column, of a row printed as given (the paper's, or the NB201 table's): no verdict.

    A bare number is a single value without a std (Table A.1's paper rows, the reference rows).
    """
    given = {k: c if isinstance(c, PaperCell) else PaperCell(c) for k, c in cells.items()}
    return {f"{k}_{part}": fmt_csv_num(getattr(given[k], part)) for k in ACCURACY_KEYS for part in ("mean", "std")}


@dataclass(frozen=True)
class AccuracyRow:
    """One method's reproduced NB201 row, from one lookup result file: one judged cell per accuracy key."""

    result: Nb201Result
    label: str
    cells: Mapping[str, JudgedCell]

    method = property(lambda self: self.result.method)
    profile = property(lambda self: self.result.profile)
    paper_settings = property(lambda self: self.result.paper_settings)
    cost_unit = property(lambda self: self.result.cost_unit)
    runs = property(lambda self: self.result.runs)
    seeds = property(lambda self: tuple(run.seed for run in self.runs))

    @property
    def cost_hours(self) -> float:
        """Mean search hours per run, in cost_unit as measured."""
        return render.summarize([run.search_hours for run in self.runs]).mean

    def note(self, with_device: bool) -> str:
        device = render.devices_text(self.runs) if with_device else ""
        return (f"- **{self.label}**: {render.setting_text(self.profile, self.paper_settings)}, "
                f"{render.runs_text(self.seeds)}, search cost measured in {self.cost_unit}{device}. "
                f"{self.result.profile_note}")

    def md_row(self) -> list[str]:
        cost = render.fmt_cost(self.cost_hours, self.cost_unit, fmt_num)
        cells = [self.cells[k].markdown() for k in ACCURACY_KEYS]
        return ["ours", self.label, self.profile, str(len(self.runs)), cost, *cells]

    def csv_row(self, with_seeds: bool) -> list[str]:
        seeds = [" ".join(map(str, self.seeds))] if with_seeds else []
        return ["ours", self.label, self.profile, str(len(self.runs)), *seeds, fmt_csv_num(self.cost_hours),
                self.cost_unit, *(v for k in ACCURACY_KEYS for v in self.cells[k].csv())]

    def misses(self) -> list[tuple[str, JudgedCell]]:
        return [(f"{self.label}, {ACCURACY_LABELS[k]}", self.cells[k]) for k in ACCURACY_KEYS]


def read_result(path: Path, labels: Mapping[str, str]) -> Nb201Result:
    """A lookup result file whose method is a key of ``labels`` (the methods the table prints)."""
    result = Nb201Result.read(path)
    if result.method not in labels:
        raise ReportError(f"{path}: key 'method' has unknown method {result.method!r}; "
                          f"expected one of {', '.join(labels)}")
    return result


def accuracy_row(result: Nb201Result, label: str, paper: Mapping[str, float | None] | None,
                 tolerance: float) -> AccuracyRow:
    """Judge a result's mean accuracies against ``paper`` (None: the paper has no such row)."""
    cells = {key: render.judged_cell([getattr(run.accuracies, key) for run in result.runs],
                                     paper[key] if paper else None, tolerance, profile=result.profile,
                                     paper_settings=result.paper_settings) for key in ACCURACY_KEYS}
    return AccuracyRow(result, label, MappingProxyType(cells))


@dataclass(frozen=True)
class ReferenceRow:
    """A row read from the NB201 benchmark table, not from any search."""

    label: str
    accuracies: Mapping[str, float]


@dataclass(frozen=True)
class Table1Report:
    """Everything Table 1 prints; ``markdown()`` and ``csv()`` render it deterministically."""

    paper_rows: tuple[Table1Row, ...]
    reproduced: tuple[AccuracyRow, ...]
    references: tuple[ReferenceRow, ...]
    tolerances: Mapping[str, float]
    stem = "table1"

    def markdown(self) -> str:
        tol = render.one_tolerance(self.tolerances, "Table 1")
        rows = [["paper", p.method, "paper", MISSING, render.fmt_cost(p.cost_hours, TABLE1_COST_UNIT, fmt_num),
                 *(fmt_mean_std(p.cells[k].mean, p.cells[k].std) for k in ACCURACY_KEYS)] for p in self.paper_rows]
        rows += [row.md_row() for row in self.reproduced]
        rows += [["reference", ref.label, "NB201 table", MISSING, MISSING,
                  *(fmt_num(ref.accuracies[k]) for k in ACCURACY_KEYS)] for ref in self.references]
        return render.page(
            "Table 1 — NAS-Bench-201, searched on CIFAR-10",
            f"Paper: IS-DARTS (AAAI 2024), Table 1 — accuracy (%) of the searched cell, mean±std over {TABLE1_SEEDS} "
            f"seeds; search cost in {TABLE1_COST_UNIT}. Reproduced rows: accuracies are the NB201 benchmark's "
            "200-epoch values of each searched cell, mean±std (sample std) over our seeds; search cost is the mean "
            "per run, in the unit it was measured in.",
            notes=[row.note(with_device=True) for row in self.reproduced], empty="No reproduced runs were given.",
            unjudged=[(r.label, r.profile) for r in self.reproduced if not r.paper_settings],
            verdict=render.verdict_rule("cell", tol, judged="runs with the paper's settings"),
            tolerance=tol, table=render.markdown_table(ACCURACY_HEADER, rows, ACCURACY_ALIGN),
            tail=[*render.misses(c for row in self.reproduced for c in row.misses()),
                  f"Reference rows are read from the NB201 benchmark table: the all-skip cell is `{ALL_SKIP_ARCH}`; "
                  "the optimum row takes each column's maximum over all cells (the best cell differs between "
                  "columns)."],
        )

    def csv(self) -> str:
        rows = [render.padded(CSV_COLUMNS, source="paper", method=p.method, profile="paper",
                              cost=fmt_csv_num(p.cost_hours), cost_unit=TABLE1_COST_UNIT, **given_csv(p.cells))
                for p in self.paper_rows]
        rows += [row.csv_row(with_seeds=False) for row in self.reproduced]
        rows += [render.padded(CSV_COLUMNS, source="reference", method=ref.label, **given_csv(ref.accuracies))
                 for ref in self.references]
        return render.csv_text(CSV_COLUMNS, rows)


def _references(benchmark: Nb201Table) -> tuple[ReferenceRow, ...]:
    skip = benchmark.lookup(ALL_SKIP_ARCH).accuracies()
    best = {key: benchmark.optimum(key).accuracies()[key] for key in ACCURACY_KEYS}
    return (ReferenceRow("all-skip cell (DARTS collapse)", MappingProxyType({k: skip[k] for k in ACCURACY_KEYS})),
            ReferenceRow("NB201 optimum (column maxima)", MappingProxyType(best)))


def build_table1(result_files: Sequence[Path], benchmark: Nb201Table | None = None) -> Table1Report:
    """Table 1 from the lookup stage's result files (one per method, any order); ``benchmark`` for the references."""
    rows: dict[str, AccuracyRow] = {}
    sources: dict[str, Path] = {}
    for path in map(Path, result_files):
        result = read_result(path, METHOD_LABELS)
        if result.method in rows:
            raise ReportError(f"{path}: key 'method' {result.method!r} already read from {sources[result.method]}")
        paper = table1_row(METHOD_LABELS[result.method])
        means = {k: paper.cells[k].mean for k in ACCURACY_KEYS} if paper else None
        rows[result.method] = accuracy_row(result, METHOD_LABELS[result.method], means, TOLERANCES[ACCURACY_KEYS[0]])
        sources[result.method] = path
    return Table1Report(TABLE1, tuple(rows[m] for m in METHOD_LABELS if m in rows),
                        _references(benchmark if benchmark is not None else default_table()), TOLERANCES)
