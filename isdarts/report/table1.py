"""Table 1 rebuilt: NAS-Bench-201 searched on CIFAR-10, the paper's rows beside ours.

Reads the `lookup` stage's result files (one JSON per method), summarises each method over its
seeds, judges every cell against the paper's number, and adds reference rows from the NB201
benchmark table (the all-skip collapse cell and the per-column optimum). Quick-profile numbers
are shown but never judged as a pass: they are not paper-scale runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from isdarts.benchmark.nb201 import ACCURACY_KEYS, ACCURACY_LABELS, Nb201Table, default_table
from isdarts.io import atomic_write_text
from isdarts.report.paper import TABLE1, TABLE1_COST_UNIT, TABLE1_SEEDS, PaperCell, Table1Row, table1_row
from isdarts.report.tables import (
    MISSING,
    ReportError,
    Summary,
    Verdict,
    comparable,
    csv_text,
    fmt_csv_num,
    fmt_mean_std,
    fmt_num,
    judge,
    load_json,
    markdown_table,
    require,
    require_number,
    summarize,
    verdict_legend,
)

__all__ = [
    "ALL_SKIP_ARCH",
    "CSV_COLUMNS",
    "METHOD_LABELS",
    "Nb201Result",
    "TOLERANCES",
    "ReferenceRow",
    "ReproducedCell",
    "ReproducedRow",
    "Run",
    "Table1Report",
    "build_table1",
    "read_nb201_result",
    "read_result",
    "read_run",
    "write_table1",
]

# Reproduced methods, in the order their rows are printed (input order must not matter).
METHOD_LABELS: Mapping[str, str] = MappingProxyType({
    "darts1": "DARTS (1st)",
    "darts2": "DARTS (2nd)",
    "isdarts": "IS-DARTS",
    "lambda_darts": "Λ-DARTS",
})

# |our mean − paper mean| allowed per column, in percentage points of accuracy.
TOLERANCES: Mapping[str, float] = MappingProxyType({key: 1.0 for key in ACCURACY_KEYS})

# DARTS's collapse on NB201: every edge a skip connection (C10 test 54.30 in the paper).
ALL_SKIP_ARCH = (
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
)

CSV_COLUMNS: tuple[str, ...] = (
    "source", "method", "profile", "n_runs", "cost", "cost_unit",
    *(f"{key}_{part}" for key in ACCURACY_KEYS for part in ("mean", "std", "verdict")),
)


@dataclass(frozen=True)
class Run:
    """One seed's searched cell, its benchmark accuracies and its measured search cost."""

    seed: int
    arch_str: str
    accuracies: Mapping[str, float]
    search_hours: float
    cost_unit: str
    device_name: str | None


@dataclass(frozen=True)
class ReproducedCell:
    """Our summary of one column, the paper's number for it (if any) and the verdict."""

    summary: Summary
    paper: PaperCell | None
    verdict: Verdict


@dataclass(frozen=True)
class ReproducedRow:
    """One method's reproduced row, from one result file."""

    method: str
    label: str
    profile: str
    paper_settings: bool
    profile_note: str
    runs: tuple[Run, ...]
    cost_hours: float  # mean search hours per run, in cost_unit as measured
    cost_unit: str
    cells: Mapping[str, ReproducedCell]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(run.seed for run in self.runs)

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(sorted({run.device_name for run in self.runs if run.device_name}))


@dataclass(frozen=True)
class ReferenceRow:
    """A row read from the NB201 benchmark table, not from any search."""

    label: str
    accuracies: Mapping[str, float]


@dataclass(frozen=True)
class Table1Report:
    """Everything Table 1 prints; ``markdown()`` and ``csv()`` render it deterministically."""

    paper_rows: tuple[Table1Row, ...]
    reproduced: tuple[ReproducedRow, ...]
    references: tuple[ReferenceRow, ...]
    tolerances: Mapping[str, float]

    def markdown(self) -> str:
        return _render_markdown(self)

    def csv(self) -> str:
        return _render_csv(self)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Nb201Result:
    """One `lookup` result file, checked: its header fields and one Run per seed (no verdicts yet)."""

    method: str
    profile: str
    paper_settings: bool
    profile_note: str
    runs: tuple[Run, ...]
    cost_unit: str


def read_nb201_result(path: Path, methods: Mapping[str, str] = METHOD_LABELS) -> Nb201Result:
    """Parse and check one `lookup` result file whose method is a key of ``methods``.

    Shared by Table 1 and Table A.1 (which reads the idarts/sdarts files); problems raise
    ReportError naming the file and key.
    """
    path = Path(path)
    data = load_json(path)
    where = str(path)
    space = require(data, "space", str, where)
    if space != "nb201":
        raise ReportError(f"{where}: key 'space' is {space!r}; the NB201 tables need 'nb201'")
    method = require(data, "method", str, where)
    if method not in methods:
        raise ReportError(f"{where}: key 'method' has unknown method {method!r}; "
                          f"expected one of {', '.join(methods)}")
    profile = require(data, "profile", str, where)
    paper_settings = require(data, "paper_settings", bool, where)
    profile_note = require(data, "profile_note", str, where)
    raw_runs = require(data, "runs", list, where)
    if not raw_runs:
        raise ReportError(f"{where}: key 'runs' is empty")
    runs = tuple(read_run(raw, f"{where}: runs[{i}]") for i, raw in enumerate(raw_runs))

    seeds = [run.seed for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ReportError(f"{where}: key 'seed' repeats across runs ({sorted(seeds)})")
    units = sorted({run.cost_unit for run in runs})
    if len(units) != 1:
        # Averaging GPU-hours with CPU-hours would give a number in no unit at all.
        raise ReportError(f"{where}: key 'cost_unit' differs across runs ({', '.join(units)})")
    return Nb201Result(method, profile, paper_settings, profile_note, runs, units[0])


def read_result(path: Path) -> ReproducedRow:
    """Parse and check one Table 1 `lookup` result file; problems raise ReportError naming file and key."""
    res = read_nb201_result(path)
    label = METHOD_LABELS[res.method]
    paper = table1_row(label)
    ok = comparable(res.profile, res.paper_settings)
    cells = {}
    for key in ACCURACY_KEYS:
        summary = summarize([run.accuracies[key] for run in res.runs])
        paper_cell = paper.cells[key] if paper else None
        verdict = judge(summary.mean, paper_cell.mean if paper_cell else None, TOLERANCES[key],
                        comparable=ok, profile=res.profile)
        cells[key] = ReproducedCell(summary, paper_cell, verdict)
    return ReproducedRow(
        method=res.method, label=label, profile=res.profile, paper_settings=res.paper_settings,
        profile_note=res.profile_note, runs=res.runs,
        cost_hours=summarize([run.search_hours for run in res.runs]).mean, cost_unit=res.cost_unit,
        cells=MappingProxyType(cells),
    )


def read_run(raw: Any, where: str) -> Run:
    """One entry of a result file's "runs" list; ``where`` names the file and index in errors."""
    if not isinstance(raw, dict):
        raise ReportError(f"{where}: expected an object, got {type(raw).__name__}")
    seed = require(raw, "seed", int, where)
    arch_str = require(raw, "arch_str", str, where)
    raw_acc = require(raw, "accuracies", dict, where)
    accuracies = {key: require_number(raw_acc, key, f"{where}.accuracies") for key in ACCURACY_KEYS}
    hours = require_number(raw, "search_hours", where)
    cost_unit = require(raw, "cost_unit", str, where)
    device = raw.get("device_name")
    if device is not None and not isinstance(device, str):
        raise ReportError(f"{where}: key 'device_name' must be str, got {type(device).__name__}")
    return Run(seed, arch_str, MappingProxyType(accuracies), hours, cost_unit, device)


def _references(benchmark: Nb201Table) -> tuple[ReferenceRow, ...]:
    skip = benchmark.lookup(ALL_SKIP_ARCH).accuracies()
    best = {key: benchmark.optimum(key).accuracies()[key] for key in ACCURACY_KEYS}
    return (
        ReferenceRow("all-skip cell (DARTS collapse)", MappingProxyType({k: skip[k] for k in ACCURACY_KEYS})),
        ReferenceRow("NB201 optimum (column maxima)", MappingProxyType(best)),
    )


def build_table1(result_files: Sequence[Path], benchmark: Nb201Table | None = None) -> Table1Report:
    """Table 1 from the `lookup` stage's result files (one per method, any order).

    ``benchmark`` is the NB201 table for the reference rows; the shipped table by default.
    """
    rows: dict[str, ReproducedRow] = {}
    sources: dict[str, Path] = {}
    for path in result_files:
        row = read_result(Path(path))
        if row.method in rows:
            raise ReportError(f"{path}: key 'method' {row.method!r} already read from {sources[row.method]}")
        rows[row.method], sources[row.method] = row, Path(path)
    ordered = tuple(rows[m] for m in METHOD_LABELS if m in rows)
    return Table1Report(
        paper_rows=TABLE1,
        reproduced=ordered,
        references=_references(benchmark if benchmark is not None else default_table()),
        tolerances=TOLERANCES,
    )


def write_table1(report: Table1Report, out_dir: Path) -> tuple[Path, Path]:
    """Write ``table1.md`` and ``table1.csv`` atomically into out_dir; returns both paths."""
    out_dir = Path(out_dir)
    md, csv = out_dir / "table1.md", out_dir / "table1.csv"
    atomic_write_text(md, report.markdown())
    atomic_write_text(csv, report.csv())
    return md, csv


# ---------------------------------------------------------------- rendering


def _labels() -> list[str]:
    return [ACCURACY_LABELS[key] for key in ACCURACY_KEYS]


def _tolerance(report: Table1Report) -> float:
    values = set(report.tolerances.values())
    if len(values) != 1:  # the text states one tolerance; say so loudly if that stops being true
        raise ValueError(f"Table 1 expects one tolerance for all columns, got {sorted(values)}")
    return values.pop()


def _cost(hours: float | None, unit: str) -> str:
    return MISSING if hours is None else f"{fmt_num(hours)} {unit}"


def _row_intro(row: ReproducedRow) -> str:
    seeds = ", ".join(str(s) for s in row.seeds)
    n = len(row.runs)
    device = f" on {', '.join(row.devices)}" if row.devices else ""
    setting = "paper settings" if row.paper_settings else "not the paper settings"
    return (f"- **{row.label}**: profile `{row.profile}` ({setting}), {n} run{'s' if n != 1 else ''} "
            f"(seed{'s' if n != 1 else ''} {seeds}), search cost measured in {row.cost_unit}{device}. "
            f"{row.profile_note}")


def _render_markdown(report: Table1Report) -> str:
    tol = _tolerance(report)
    out = [
        "# Table 1 — NAS-Bench-201, searched on CIFAR-10",
        "",
        f"Paper: IS-DARTS (AAAI 2024), Table 1 — accuracy (%) of the searched cell, mean±std over "
        f"{TABLE1_SEEDS} seeds; search cost in {TABLE1_COST_UNIT}. Reproduced rows: accuracies are the "
        "NB201 benchmark's 200-epoch values of each searched cell, mean±std (sample std) over our seeds; "
        "search cost is the mean per run, in the unit it was measured in.",
        "",
    ]
    if report.reproduced:
        out += ["Reproduced:", ""] + [_row_intro(row) for row in report.reproduced] + [""]
    else:
        out += ["No reproduced runs were given.", ""]
    not_paper = [row for row in report.reproduced if not row.paper_settings]
    if not_paper:
        profiles = ", ".join(sorted({row.profile for row in not_paper}))
        methods = ", ".join(row.label for row in not_paper)
        out += [f"**The reproduced numbers for {methods} come from the {profiles} profile: they are not "
                "paper-scale numbers and are not compared with the paper.**", ""]
    out += [
        f"Verdict: a reproduced cell passes when |our mean − paper mean| ≤ {tol:.1f} percentage point, "
        "and is judged only for runs with the paper's settings.",
        "",
        "Legend: " + verdict_legend(tol),
        "",
        markdown_table(_md_header(), _md_rows(report), ["l", "l", "l", "r", "r", *"r" * len(ACCURACY_KEYS)]),
    ]
    misses = [f"- {row.label}, {ACCURACY_LABELS[key]}: {cell.verdict.text}"
              for row in report.reproduced for key, cell in row.cells.items()
              if cell.verdict.status == "fail"]
    if misses:
        out += ["Cells outside the tolerance:", "", *misses, ""]
    out += [
        f"Reference rows are read from the NB201 benchmark table: the all-skip cell is `{ALL_SKIP_ARCH}`; "
        "the optimum row takes each column's maximum over all cells (the best cell differs between columns).",
    ]
    return "\n".join(out) + "\n"


def _md_header() -> list[str]:
    return ["Source", "Method", "Profile", "Runs", "Search cost", *_labels()]


def _md_rows(report: Table1Report) -> list[list[str]]:
    rows = [
        ["paper", p.method, "paper", MISSING, _cost(p.cost_hours, TABLE1_COST_UNIT),
         *(fmt_mean_std(p.cells[k].mean, p.cells[k].std) for k in ACCURACY_KEYS)]
        for p in report.paper_rows
    ]
    for r in report.reproduced:
        cells = [f"{fmt_mean_std(c.summary.mean, c.summary.std, n=c.summary.n)} {c.verdict.marker}"
                 for c in (r.cells[k] for k in ACCURACY_KEYS)]
        rows.append(["ours", r.label, r.profile, str(len(r.runs)), _cost(r.cost_hours, r.cost_unit), *cells])
    for ref in report.references:
        rows.append(["reference", ref.label, "NB201 table", MISSING, MISSING,
                     *(fmt_num(ref.accuracies[k]) for k in ACCURACY_KEYS)])
    return rows


def _csv_cells(triples: Sequence[tuple[float | None, float | None, str]]) -> list[str]:
    return [v for mean, std, verdict in triples for v in (fmt_csv_num(mean), fmt_csv_num(std), verdict)]


def _render_csv(report: Table1Report) -> str:
    rows: list[list[str]] = []
    for p in report.paper_rows:
        cells = _csv_cells([(p.cells[k].mean, p.cells[k].std, "") for k in ACCURACY_KEYS])
        rows.append(["paper", p.method, "paper", "", fmt_csv_num(p.cost_hours), TABLE1_COST_UNIT, *cells])
    for r in report.reproduced:
        stats = [r.cells[k] for k in ACCURACY_KEYS]
        cells = _csv_cells([(c.summary.mean, c.summary.std, c.verdict.text) for c in stats])
        n = str(len(r.runs))
        rows.append(["ours", r.label, r.profile, n, fmt_csv_num(r.cost_hours), r.cost_unit, *cells])
    for ref in report.references:
        cells = _csv_cells([(ref.accuracies[k], None, "") for k in ACCURACY_KEYS])
        rows.append(["reference", ref.label, "", "", "", "", *cells])
    return csv_text(CSV_COLUMNS, rows)
