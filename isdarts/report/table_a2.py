"""Table A.2 rebuilt: the shrink rate on the DARTS search space, CIFAR-10, the paper's rates as columns.

Reads one retrained cell per shrink rate (one run, as in the paper) from
``runs/darts/sweep/<rate_name>/retrain/metrics.json``; the markdown lays the rates out as columns, as the paper
does, and the CSV keeps one row per rate (the paper's, then ours). Only paper-profile runs are judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from isdarts.errors import ReportError
from isdarts.records import SweepRetrainMetrics, finished, subdirs
from isdarts.report import render
from isdarts.report.paper import TABLE_A2, ShrinkRateRow
from isdarts.report.render import COST, Cell, Column, JudgedCell, Row, col, fmt_csv_num, fmt_num
from isdarts.report.runs import Reproduced, search_cost_days

# Sweep folder -> the paper's shrink rate, in the paper's column order (rate falling, steps rising).
RATE_NAMES: Mapping[str, float] = MappingProxyType({
    "r1": 1.0, "r0_5": 0.5, "r0_25": 0.25, "r0_143": 0.143, "r0_1": 0.1, "r0_05": 0.05,
})

# As Table 2: the paper's rates differ by 0.02–0.45 pp, so a looser bound would judge nothing.
TOLERANCE = 0.3

COLUMNS = (*map(col, ("source", "rate_name", "rate", "rate_label", "profile", "seed", "steps", "interval")),
           Column("test_error", None, ("test_error", "test_error_verdict")),
           Column("best_error", None, ("best_error", "best_error_verdict")), col("params_m"), COST)

# The markdown's rows, one per (label, whose row, column key); its columns are the paper's rates.
MD_ROWS = (
    ("steps S (paper)", "paper", "steps"), ("interval epoch (paper)", "paper", "interval"),
    ("test error % (paper)", "paper", "test_error"), ("steps S (ours)", "ours", "steps"),
    ("interval epoch (ours)", "ours", "interval"), ("test error % (ours, final epoch)", "ours", "test_error"),
    ("test error % (ours, best epoch)", "ours", "best_error"), ("profile (ours)", "ours", "profile"),
    ("search cost (ours)", "ours", "cost"),
)

# The sweep's genotypes differ only in rate; a rate read from the wrong folder would silently shift a column.
_RATE_MATCH = 1e-3


def _interval(value: int | None) -> Cell:
    """A shrink interval in epochs; the paper's "/" (empty in CSV) when the rate never shrinks."""
    return Cell("/", ("",)) if value is None else Cell(str(value), (str(value),))


def _single(judged: JudgedCell) -> Cell:
    # One run per rate, as in the paper: a bare number, not a "±0.00 (n=1)" spread.
    return Cell(f"{fmt_num(judged.summary.mean)} {judged.verdict.marker}",
                (fmt_csv_num(judged.summary.mean), judged.verdict.text))


@dataclass(frozen=True)
class SweepRun(Reproduced):
    """One shrink rate's retrained cell, the paper's column for its rate, and both judged errors."""

    rate_name: str
    run: SweepRetrainMetrics
    paper: ShrinkRateRow

    label = property(lambda self: f"rate {self.run.rate_label}")
    runs = property(lambda self: (self.run,))
    test_error = property(lambda self: self.judge([self.run.final_test_error], self.paper.test_error, TOLERANCE))
    best_error = property(lambda self: self.judge([self.run.best_test_error], self.paper.test_error, TOLERANCE))

    def judged_cells(self) -> dict[str, JudgedCell]:
        return {"final error": self.test_error, "best-epoch error": self.best_error}

    def note(self) -> str:
        r = self.run
        return (f"- **{self.label}** (`{self.rate_name}`): {self.setting_text()}, seed {r.seed}, {r.steps} shrink "
                f"steps, interval {_interval(r.interval).md}, anchor `{r.anchor}`; retrained {r.epochs} epochs on "
                f"{r.train_images} training / {r.test_images} test images; genotype `{r.genotype}`."
                f"{self.differs(say_matches=False)}")

    def row(self) -> Row:
        r = self.run
        return {"source": "ours", "rate_name": self.rate_name, "rate": render.number(r.rate),
                "rate_label": r.rate_label, "profile": r.profile, "seed": str(r.seed), "steps": str(r.steps),
                "interval": _interval(r.interval), "test_error": _single(self.test_error),
                "best_error": _single(self.best_error), "params_m": render.number(r.params_m),
                "cost": render.cost(*search_cost_days([r], self.rate_name))}


def paper_row(p: ShrinkRateRow) -> Row:
    return {"source": "paper", "rate": render.number(p.rate), "rate_label": p.label, "profile": "paper",
            "steps": str(p.steps), "interval": _interval(p.interval_epochs), "test_error": render.number(p.test_error)}


def read_sweep_run(path: Path, rate_name: str) -> SweepRun:
    """One sweep retrain metrics.json lying under ``<rate_name>/retrain/``, judged against its paper column."""
    if rate_name not in RATE_NAMES:
        raise ReportError(f"{path}: unknown shrink-rate folder {rate_name!r}; expected one of {', '.join(RATE_NAMES)}")
    run = SweepRetrainMetrics.read(path)
    rate = RATE_NAMES[rate_name]
    if abs(run.rate - rate) > _RATE_MATCH:
        raise ReportError(f"{path}: key 'rate' is {run.rate} but the folder {rate_name!r} is rate {rate}")
    return SweepRun(rate_name, run, next(row for row in TABLE_A2 if abs(row.rate - rate) <= _RATE_MATCH))


def build_table_a2(sweep_dir: Path = Path("runs/darts/sweep")) -> render.Report:
    """Table A.2 from ``<sweep_dir>/<rate_name>/retrain/metrics.json``, by rate (falling); absent rates print "–"."""
    found = [read_sweep_run(d / "retrain" / "metrics.json", d.name) for d in subdirs(sweep_dir)
             if finished(d / "retrain" / "metrics.json")]
    ours = sorted(found, key=lambda s: -RATE_NAMES[s.rate_name])
    by_rate = [(p, next((s for s in ours if s.paper is p), None)) for p in TABLE_A2]
    notes = [s.note() for s in ours]
    if notes and (missing := [p.label for p, s in by_rate if s is None]):
        notes.append(f"- not run: rate {', '.join(missing)}; run `dvc repro`")
    cells = [{"paper": paper_row(p), "ours": s.row() if s else {}} for p, s in by_rate]
    return render.report(
        "table_a2", COLUMNS, [*map(paper_row, TABLE_A2), *(s.row() for s in ours)], ours,
        "Table A.2 — shrink rate, DARTS search space, CIFAR-10",
        "Paper: IS-DARTS (AAAI 2024), Table A.2 — test error (%) of the cell searched with each shrink rate and "
        "retrained on CIFAR-10; steps S = 1/rate, shrinking every `interval` epochs (\"/\": no shrinking). "
        "Reproduced: one search and one retrain per rate; final-epoch test error, with the best epoch's error "
        "below it (the official code's log reports the best epoch).",
        notes=notes, empty=render.no_runs_line(Path(sweep_dir)),
        what="error", difference="ours − paper", tolerance=TOLERANCE,
        # The paper's layout: one column per rate, one row per (label, whose number, column key) of MD_ROWS.
        table=render.markdown_table(["shrink rate", *(p.label for p in TABLE_A2)],
                                    [[label, *(render.cell(c[whose], key).md for c in cells)]
                                     for label, whose, key in MD_ROWS], "l" + "r" * len(TABLE_A2)),
    )
