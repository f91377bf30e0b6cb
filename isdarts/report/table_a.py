"""Appendix tables rebuilt: A.1 (IIM and shrinking ablated on NB201) and A.2 (shrink rate, DARTS space).

A.1 reads the `lookup` stage's ``results/nb201_{isdarts,idarts,sdarts}.json`` and prints the six
NB201 accuracies of each method over its seeds beside the paper's single numbers. A.2 reads one
retrained cell per shrink rate from ``runs/darts/sweep/<rate_name>/retrain/metrics.json`` and lays
the rates out as columns, as the paper does. Only paper-profile runs are judged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from isdarts.benchmark.nb201 import ACCURACY_KEYS, ACCURACY_LABELS
from isdarts.io import atomic_write_text
from isdarts.report.paper import TABLE_A1, TABLE_A2, AblationRow, ShrinkRateRow
from isdarts.report.table1 import TOLERANCES as TABLE1_TOLERANCES
from isdarts.report.table1 import Run, read_nb201_result
from isdarts.report.table2 import RetrainRun, parse_retrain_metrics
from isdarts.report.tables import (
    MISSING,
    JudgedCell,
    ReportError,
    comparable,
    csv_text,
    fmt_csv_num,
    fmt_csv_sig,
    fmt_judged,
    fmt_num,
    fmt_sig,
    judged_cell,
    load_json,
    markdown_table,
    no_runs_line,
    not_comparable_warning,
    require,
    require_number,
    search_cost_days,
    setting_text,
    verdict_legend,
)

__all__ = [
    "A1_CSV_COLUMNS",
    "A1_LABELS",
    "A1_TOLERANCE",
    "A2_CSV_COLUMNS",
    "A2_TOLERANCE",
    "RATE_NAMES",
    "A1Ours",
    "SweepRun",
    "TableA1Report",
    "TableA2Report",
    "build_table_a1",
    "build_table_a2",
    "read_sweep_metrics",
    "write_table_a1",
    "write_table_a2",
]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- Table A.1

# The ablation's methods in the paper's row order; IS-DARTS is read from the same file as Table 1's.
A1_LABELS: Mapping[str, str] = MappingProxyType({"isdarts": "IS-DARTS", "idarts": "I-DARTS", "sdarts": "S-DARTS"})

# The same ±1 pp of accuracy Table 1 uses: the same benchmark numbers, so the same yardstick.
A1_TOLERANCE: float = TABLE1_TOLERANCES[ACCURACY_KEYS[0]]

A1_CSV_COLUMNS: tuple[str, ...] = (
    "source", "method", "profile", "n_runs", "seeds", "cost", "cost_unit",
    *(f"{key}_{part}" for key in ACCURACY_KEYS for part in ("mean", "std", "verdict")),
)


@dataclass(frozen=True)
class A1Ours:
    """One ablation method's reproduced row, from one result file."""

    method: str
    label: str
    profile: str
    paper_settings: bool
    profile_note: str
    runs: tuple[Run, ...]
    cost_hours: float
    cost_unit: str
    cells: Mapping[str, JudgedCell]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(run.seed for run in self.runs)


@dataclass(frozen=True)
class TableA1Report:
    """Everything Table A.1 prints; ``source`` is the results folder the files were looked for in."""

    paper_rows: tuple[AblationRow, ...]
    reproduced: tuple[A1Ours, ...]
    source: Path
    tolerance: float

    def markdown(self) -> str:
        return _a1_markdown(self)

    def csv(self) -> str:
        return _a1_csv(self)


def _a1_row(path: Path) -> A1Ours:
    res = read_nb201_result(path, A1_LABELS)
    label = A1_LABELS[res.method]
    paper = next((row for row in TABLE_A1 if row.method == label), None)
    cells = {key: judged_cell([run.accuracies[key] for run in res.runs], paper.accuracies[key] if paper else None,
                              A1_TOLERANCE, profile=res.profile, paper_settings=res.paper_settings)
             for key in ACCURACY_KEYS}
    hours = math.fsum(run.search_hours for run in res.runs) / len(res.runs)
    return A1Ours(res.method, label, res.profile, res.paper_settings, res.profile_note, res.runs, hours,
                  res.cost_unit, MappingProxyType(cells))


def build_table_a1(results_dir: Path = Path("results")) -> TableA1Report:
    """Table A.1 from ``results/nb201_<method>.json`` of isdarts, idarts and sdarts (those that exist)."""
    results_dir = Path(results_dir)
    rows = []
    for method in A1_LABELS:
        path = results_dir / f"nb201_{method}.json"
        if path.is_file():
            row = _a1_row(path)
            if row.method != method:
                raise ReportError(f"{path}: key 'method' is {row.method!r} but the file is named for {method!r}")
            rows.append(row)
    return TableA1Report(TABLE_A1, tuple(rows), results_dir, A1_TOLERANCE)


def write_table_a1(report: TableA1Report, out_dir: Path) -> tuple[Path, Path]:
    """Write ``table_a1.md`` and ``table_a1.csv`` atomically into out_dir; returns both paths."""
    return _write(out_dir, "table_a1", report.markdown(), report.csv())


def _a1_markdown(report: TableA1Report) -> str:
    tol = report.tolerance
    labels = [ACCURACY_LABELS[k] for k in ACCURACY_KEYS]
    out = [
        "# Table A.1 — ablation on NAS-Bench-201: IS-DARTS vs I-DARTS vs S-DARTS",
        "",
        "Paper: IS-DARTS (AAAI 2024), Table A.1 — accuracy (%) of the cell searched on CIFAR-10, single "
        "numbers (no std). I-DARTS is IIM without shrinking, S-DARTS shrinking without IIM (§3.5; the appendix "
        "swaps the two names). Reproduced rows: the NB201 benchmark's 200-epoch accuracies of each searched "
        "cell, mean±std (sample std) over our seeds; search cost is the mean per run, in the unit it was "
        "measured in.",
        "",
    ]
    if report.reproduced:
        out += ["Reproduced:", ""]
        for row in report.reproduced:
            n = len(row.runs)
            out.append(f"- **{row.label}**: {setting_text(row.profile, row.paper_settings)}, {n} "
                       f"run{'s' if n != 1 else ''} (seed{'s' if n != 1 else ''} "
                       f"{', '.join(str(s) for s in row.seeds)}), search cost measured in {row.cost_unit}. "
                       f"{row.profile_note}")
        absent = [f"{label} (`{report.source / f'nb201_{m}.json'}`)" for m, label in A1_LABELS.items()
                  if m not in {row.method for row in report.reproduced}]
        if absent:
            out.append(f"- not run: {', '.join(absent)}; run `dvc repro`")
        out.append("")
    else:
        files = ", ".join(f"nb201_{m}.json" for m in A1_LABELS)
        out += [no_runs_line(report.source) + f" (looked for {files})", ""]
    not_paper = [row for row in report.reproduced if not comparable(row.profile, row.paper_settings)]
    if not_paper:
        out += [not_comparable_warning([r.label for r in not_paper], [r.profile for r in not_paper]), ""]
    out += [
        f"Verdict: a reproduced cell passes when |our mean − paper number| ≤ {tol:.1f} percentage point, "
        "and is judged only for paper-profile runs with the paper's settings.",
        "",
        "Legend: " + verdict_legend(tol),
        "",
    ]
    rows = [["paper", p.method, "paper", MISSING, MISSING, *(fmt_num(p.accuracies[k]) for k in ACCURACY_KEYS)]
            for p in report.paper_rows]
    rows += [["ours", r.label, r.profile, str(len(r.runs)), f"{fmt_num(r.cost_hours)} {r.cost_unit}",
              *(fmt_judged(r.cells[k]) for k in ACCURACY_KEYS)] for r in report.reproduced]
    out.append(markdown_table(["Source", "Method", "Profile", "Runs", "Search cost", *labels], rows,
                              ["l", "l", "l", "r", "r", *"r" * len(ACCURACY_KEYS)]))
    misses = [f"- {row.label}, {ACCURACY_LABELS[key]}: {cell.verdict.text}"
              for row in report.reproduced for key, cell in row.cells.items() if cell.verdict.status == "fail"]
    if misses:
        out += ["Cells outside the tolerance:", "", *misses, ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _a1_csv(report: TableA1Report) -> str:
    rows: list[list[str]] = []
    for p in report.paper_rows:
        cells = [v for k in ACCURACY_KEYS for v in (fmt_csv_num(p.accuracies[k]), "", "")]
        rows.append(["paper", p.method, "paper", "", "", "", "", *cells])
    for r in report.reproduced:
        cells = [v for c in (r.cells[k] for k in ACCURACY_KEYS)
                 for v in (fmt_csv_num(c.summary.mean), fmt_csv_num(c.summary.std), c.verdict.text)]
        rows.append(["ours", r.label, r.profile, str(len(r.runs)), " ".join(str(s) for s in r.seeds),
                     fmt_csv_num(r.cost_hours), r.cost_unit, *cells])
    return csv_text(A1_CSV_COLUMNS, rows)


# ---------------------------------------------------------------- Table A.2

# Sweep folder -> the paper's shrink rate, in the paper's column order (rate falling, steps rising).
RATE_NAMES: Mapping[str, float] = MappingProxyType({
    "r1": 1.0, "r0_5": 0.5, "r0_25": 0.25, "r0_143": 0.143, "r0_1": 0.1, "r0_05": 0.05,
})

# As Table 2: the paper's rates differ by 0.02–0.45 pp, so a looser bound would judge nothing.
A2_TOLERANCE = 0.3

A2_CSV_COLUMNS: tuple[str, ...] = (
    "source", "rate_name", "rate", "rate_label", "profile", "seed", "steps", "interval",
    "test_error", "test_error_verdict", "best_error", "best_error_verdict", "params_m", "cost", "cost_unit",
)

# The sweep's genotypes differ only in rate; a rate read from the wrong folder would silently shift a column.
_RATE_MATCH = 1e-3


@dataclass(frozen=True)
class SweepRun:
    """One shrink rate's retrained cell: the retrain fields plus the sweep's schedule."""

    rate_name: str
    rate: float
    rate_label: str
    steps: int
    interval: int | None
    anchor: str
    retrain: RetrainRun
    paper: ShrinkRateRow
    test_error: JudgedCell
    best_error: JudgedCell


@dataclass(frozen=True)
class TableA2Report:
    """Everything Table A.2 prints: the paper's rates, ours keyed by rate folder name."""

    paper_rows: tuple[ShrinkRateRow, ...]
    reproduced: Mapping[str, SweepRun]
    source: Path
    tolerance: float

    def markdown(self) -> str:
        return _a2_markdown(self)

    def csv(self) -> str:
        return _a2_csv(self)


def _paper_rate(rate: float) -> ShrinkRateRow:
    return next(row for row in TABLE_A2 if abs(row.rate - rate) <= _RATE_MATCH)


def read_sweep_metrics(path: Path, rate_name: str) -> SweepRun:
    """Parse and check one sweep retrain metrics.json lying under ``<rate_name>/retrain/``."""
    path = Path(path)
    where = str(path)
    if rate_name not in RATE_NAMES:
        raise ReportError(f"{where}: unknown shrink-rate folder {rate_name!r}; expected one of {', '.join(RATE_NAMES)}")
    data = load_json(path)
    retrain = parse_retrain_metrics(data, where)
    rate = require_number(data, "rate", where)
    if abs(rate - RATE_NAMES[rate_name]) > _RATE_MATCH:
        raise ReportError(f"{where}: key 'rate' is {rate} but the folder {rate_name!r} is rate {RATE_NAMES[rate_name]}")
    interval = require(data, "interval", (int, type(None)), where)
    paper = _paper_rate(RATE_NAMES[rate_name])
    info = retrain.info
    kw = {"profile": info.profile, "paper_settings": info.paper_settings}
    return SweepRun(
        rate_name=rate_name, rate=rate, rate_label=require(data, "rate_label", str, where),
        steps=require(data, "steps", int, where), interval=interval, anchor=require(data, "anchor", str, where),
        retrain=retrain, paper=paper,
        test_error=judged_cell([retrain.final_error], paper.test_error, A2_TOLERANCE, **kw),
        best_error=judged_cell([retrain.best_error], paper.test_error, A2_TOLERANCE, **kw),
    )


def build_table_a2(sweep_dir: Path = Path("runs/darts/sweep")) -> TableA2Report:
    """Table A.2 from ``<sweep_dir>/<rate_name>/retrain/metrics.json``; absent rates print "–"."""
    sweep_dir = Path(sweep_dir)
    found: dict[str, SweepRun] = {}
    rate_dirs = sorted(p for p in sweep_dir.iterdir() if p.is_dir()) if sweep_dir.is_dir() else []
    for rate_dir in rate_dirs:
        metrics = rate_dir / "retrain" / "metrics.json"
        if not metrics.is_file():
            log.warning("%s: no retrain/metrics.json (sweep point not finished?); left out", rate_dir)
            continue
        found[rate_dir.name] = read_sweep_metrics(metrics, rate_dir.name)
    ordered = {name: found[name] for name in sorted(found, key=lambda n: -RATE_NAMES[n])}
    return TableA2Report(TABLE_A2, MappingProxyType(ordered), sweep_dir, A2_TOLERANCE)


def write_table_a2(report: TableA2Report, out_dir: Path) -> tuple[Path, Path]:
    """Write ``table_a2.md`` and ``table_a2.csv`` atomically into out_dir; returns both paths."""
    return _write(out_dir, "table_a2", report.markdown(), report.csv())


def _interval(value: int | None) -> str:
    return "/" if value is None else str(value)


def _ours_for(report: TableA2Report, paper: ShrinkRateRow) -> SweepRun | None:
    return next((run for run in report.reproduced.values() if run.paper is paper), None)


def _a2_markdown(report: TableA2Report) -> str:
    tol = report.tolerance
    out = [
        "# Table A.2 — shrink rate, DARTS search space, CIFAR-10",
        "",
        "Paper: IS-DARTS (AAAI 2024), Table A.2 — test error (%) of the cell searched with each shrink rate and "
        "retrained on CIFAR-10; steps S = 1/rate, shrinking every `interval` epochs (\"/\": no shrinking). "
        "Reproduced: one search and one retrain per rate; final-epoch test error, with the best epoch's error "
        "below it (the official code's log reports the best epoch).",
        "",
    ]
    runs = list(report.reproduced.values())
    if runs:
        out += ["Reproduced:", ""]
        for run in runs:
            info, retrain = run.retrain.info, run.retrain
            mismatches = "; ".join(info.paper_mismatches)
            differs = f" Differs from the paper in: {mismatches}." if mismatches else ""
            out.append(f"- **rate {run.rate_label}** (`{run.rate_name}`): "
                       f"{setting_text(info.profile, info.paper_settings)}, seed {info.seed}, {run.steps} shrink "
                       f"steps, interval {_interval(run.interval)}, anchor `{run.anchor}`; retrained "
                       f"{retrain.epochs} epochs on {retrain.train_images} training / {retrain.test_images} test "
                       f"images; genotype `{info.genotype}`.{differs}")
        missing = [row.label for row in report.paper_rows if _ours_for(report, row) is None]
        if missing:
            out.append(f"- not run: rate {', '.join(missing)}; run `dvc repro`")
        out.append("")
    else:
        out += [no_runs_line(report.source), ""]
    not_paper = [run for run in runs if not comparable(run.retrain.info.profile, run.retrain.info.paper_settings)]
    if not_paper:
        out += [not_comparable_warning([f"rate {r.rate_label}" for r in not_paper],
                                       [r.retrain.info.profile for r in not_paper]), ""]
    out += [
        f"Verdict: a reproduced error passes when |ours − paper| ≤ {tol:.1f} percentage point, and is judged "
        "only for paper-profile runs with the paper's settings.",
        "",
        "Legend: " + verdict_legend(tol),
        "",
    ]
    cols = [(p, _ours_for(report, p)) for p in report.paper_rows]

    def ours(fn: Callable[[SweepRun], str]) -> list[str]:
        return [MISSING if run is None else fn(run) for _, run in cols]

    rows = [
        ["steps S (paper)", *(str(p.steps) for p, _ in cols)],
        ["interval epoch (paper)", *(_interval(p.interval_epochs) for p, _ in cols)],
        ["test error % (paper)", *(fmt_num(p.test_error) for p, _ in cols)],
        ["steps S (ours)", *ours(lambda r: str(r.steps))],
        ["interval epoch (ours)", *ours(lambda r: _interval(r.interval))],
        ["test error % (ours, final epoch)", *ours(lambda r: _single(r.test_error))],
        ["test error % (ours, best epoch)", *ours(lambda r: _single(r.best_error))],
        ["profile (ours)", *ours(lambda r: r.retrain.info.profile)],
        ["search cost (ours)", *ours(_a2_cost)],
    ]
    out.append(markdown_table(["shrink rate", *(p.label for p, _ in cols)], rows, ["l", *"r" * len(cols)]))
    misses = [f"- rate {run.rate_label}, {name}: {cell.verdict.text}" for run in runs
              for name, cell in (("final error", run.test_error), ("best-epoch error", run.best_error))
              if cell.verdict.status == "fail"]
    if misses:
        out += ["Cells outside the tolerance:", "", *misses, ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _single(cell: JudgedCell) -> str:
    # One run per rate, as in the paper: a bare number, not a "±0.00 (n=1)" spread.
    return f"{fmt_num(cell.summary.mean)} {cell.verdict.marker}"


def _a2_cost(run: SweepRun) -> str:
    days, unit = search_cost_days([run.retrain.info], run.rate_name)
    return MISSING if days is None else f"{fmt_sig(days)} {unit}"


def _a2_csv(report: TableA2Report) -> str:
    rows: list[list[str]] = []
    for p in report.paper_rows:
        rows.append(["paper", "", fmt_csv_num(p.rate), p.label, "paper", "", str(p.steps),
                     "" if p.interval_epochs is None else str(p.interval_epochs),
                     fmt_csv_num(p.test_error), "", "", "", "", "", ""])
    for run in report.reproduced.values():
        info = run.retrain.info
        days, unit = search_cost_days([info], run.rate_name)
        rows.append(["ours", run.rate_name, fmt_csv_num(run.rate), run.rate_label, info.profile, str(info.seed),
                     str(run.steps), "" if run.interval is None else str(run.interval),
                     fmt_csv_num(run.retrain.final_error), run.test_error.verdict.text,
                     fmt_csv_num(run.retrain.best_error), run.best_error.verdict.text,
                     fmt_csv_num(run.retrain.params_m), fmt_csv_sig(days), unit or ""])
    return csv_text(A2_CSV_COLUMNS, rows)


def _write(out_dir: Path, stem: str, md_text: str, csv_body: str) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    md, csv = out_dir / f"{stem}.md", out_dir / f"{stem}.csv"
    atomic_write_text(md, md_text)
    atomic_write_text(csv, csv_body)
    return md, csv
