"""Table A.2 rebuilt: the shrink rate on the DARTS search space, CIFAR-10, the paper's rates as columns.

Reads one retrained cell per shrink rate from ``runs/darts/sweep/<rate_name>/retrain/metrics.json``
and lays the rates out as columns, as the paper does; one run per rate, as in the paper. Only
paper-profile runs are judged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from isdarts.errors import ReportError
from isdarts.records import SweepRetrainMetrics
from isdarts.report import render
from isdarts.report.paper import TABLE_A2, ShrinkRateRow
from isdarts.report.render import MISSING, JudgedCell, fmt_csv_num, fmt_num

# Sweep folder -> the paper's shrink rate, in the paper's column order (rate falling, steps rising).
RATE_NAMES: Mapping[str, float] = MappingProxyType({
    "r1": 1.0, "r0_5": 0.5, "r0_25": 0.25, "r0_143": 0.143, "r0_1": 0.1, "r0_05": 0.05,
})

# As Table 2: the paper's rates differ by 0.02–0.45 pp, so a looser bound would judge nothing.
TOLERANCE = 0.3

CSV_COLUMNS: tuple[str, ...] = (
    "source", "rate_name", "rate", "rate_label", "profile", "seed", "steps", "interval",
    "test_error", "test_error_verdict", "best_error", "best_error_verdict", "params_m", "cost", "cost_unit",
)

# The sweep's genotypes differ only in rate; a rate read from the wrong folder would silently shift a column.
_RATE_MATCH = 1e-3


@dataclass(frozen=True)
class SweepRun:
    """One shrink rate's retrained cell, the paper's column for its rate, and both judged errors."""

    rate_name: str
    run: SweepRetrainMetrics
    paper: ShrinkRateRow
    test_error: JudgedCell
    best_error: JudgedCell

    label = property(lambda self: f"rate {self.run.rate_label}")

    @property
    def cost(self) -> tuple[float | None, str | None]:
        return render.search_cost_days([self.run], self.rate_name)

    def note(self) -> str:
        r = self.run
        return (f"- **{self.label}** (`{self.rate_name}`): {render.setting_text(r.profile, r.paper_settings)}, "
                f"seed {r.seed}, {r.steps} shrink steps, interval {_interval(r.interval)}, anchor `{r.anchor}`; "
                f"retrained {r.epochs} epochs on {r.train_images} training / {r.test_images} test images; "
                f"genotype `{r.genotype}`.{render.differs_text(r.paper_mismatches)}")


@dataclass(frozen=True)
class TableA2Report:
    """Everything Table A.2 prints: the paper's rates, ours keyed by rate folder name (by rate, falling)."""

    paper_rows: tuple[ShrinkRateRow, ...]
    reproduced: Mapping[str, SweepRun]
    source: Path
    tolerance: float
    stem = "table_a2"

    def markdown(self) -> str:
        runs = list(self.reproduced.values())
        cols = [(p, next((s for s in runs if s.paper is p), None)) for p in self.paper_rows]
        notes = [s.note() for s in runs]
        missing = [p.label for p, s in cols if s is None]
        if notes and missing:
            notes.append(f"- not run: rate {', '.join(missing)}; run `dvc repro`")

        def ours(fn: Callable[[SweepRun], str]) -> list[str]:
            return [MISSING if s is None else fn(s) for _, s in cols]

        rows = [
            ["steps S (paper)", *(str(p.steps) for p, _ in cols)],
            ["interval epoch (paper)", *(_interval(p.interval_epochs) for p, _ in cols)],
            ["test error % (paper)", *(fmt_num(p.test_error) for p, _ in cols)],
            ["steps S (ours)", *ours(lambda s: str(s.run.steps))],
            ["interval epoch (ours)", *ours(lambda s: _interval(s.run.interval))],
            ["test error % (ours, final epoch)", *ours(lambda s: _single(s.test_error))],
            ["test error % (ours, best epoch)", *ours(lambda s: _single(s.best_error))],
            ["profile (ours)", *ours(lambda s: s.run.profile)],
            ["search cost (ours)", *ours(lambda s: render.fmt_cost(*s.cost))],
        ]
        return render.page(
            "Table A.2 — shrink rate, DARTS search space, CIFAR-10",
            "Paper: IS-DARTS (AAAI 2024), Table A.2 — test error (%) of the cell searched with each shrink rate and "
            "retrained on CIFAR-10; steps S = 1/rate, shrinking every `interval` epochs (\"/\": no shrinking). "
            "Reproduced: one search and one retrain per rate; final-epoch test error, with the best epoch's error "
            "below it (the official code's log reports the best epoch).",
            notes=notes, empty=render.no_runs_line(self.source),
            unjudged=[(s.label, s.run.profile) for s in runs if not render.comparable(s.run.profile,
                                                                                       s.run.paper_settings)],
            verdict=render.verdict_rule("error", self.tolerance, difference="ours − paper"),
            tolerance=self.tolerance,
            table=render.markdown_table(["shrink rate", *(p.label for p, _ in cols)], rows, "l" + "r" * len(cols)),
            tail=render.misses((f"{s.label}, {name}", cell) for s in runs
                               for name, cell in (("final error", s.test_error), ("best-epoch error", s.best_error))),
        )

    def csv(self) -> str:
        rows = [render.padded(CSV_COLUMNS, source="paper", rate=fmt_csv_num(p.rate), rate_label=p.label,
                              profile="paper", steps=str(p.steps), interval=_interval(p.interval_epochs, none=""),
                              test_error=fmt_csv_num(p.test_error)) for p in self.paper_rows]
        for s in self.reproduced.values():
            r, (days, unit) = s.run, s.cost
            rows.append(["ours", s.rate_name, fmt_csv_num(r.rate), r.rate_label, r.profile, str(r.seed), str(r.steps),
                         _interval(r.interval, none=""), fmt_csv_num(r.final_test_error), s.test_error.verdict.text,
                         fmt_csv_num(r.best_test_error), s.best_error.verdict.text, fmt_csv_num(r.params_m),
                         render.fmt_csv_sig(days), unit or ""])
        return render.csv_text(CSV_COLUMNS, rows)


def _interval(value: int | None, none: str = "/") -> str:
    """A shrink interval in epochs; ``none`` (the paper's "/") when the rate never shrinks."""
    return none if value is None else str(value)


def _single(cell: JudgedCell) -> str:
    # One run per rate, as in the paper: a bare number, not a "±0.00 (n=1)" spread.
    return f"{fmt_num(cell.summary.mean)} {cell.verdict.marker}"


def read_sweep_run(path: Path, rate_name: str) -> SweepRun:
    """One sweep retrain metrics.json lying under ``<rate_name>/retrain/``, judged against its paper column."""
    if rate_name not in RATE_NAMES:
        raise ReportError(f"{path}: unknown shrink-rate folder {rate_name!r}; expected one of {', '.join(RATE_NAMES)}")
    run = SweepRetrainMetrics.read(path)
    rate = RATE_NAMES[rate_name]
    if abs(run.rate - rate) > _RATE_MATCH:
        raise ReportError(f"{path}: key 'rate' is {run.rate} but the folder {rate_name!r} is rate {rate}")
    paper = next(row for row in TABLE_A2 if abs(row.rate - rate) <= _RATE_MATCH)
    kw = {"profile": run.profile, "paper_settings": run.paper_settings}
    test, best = (render.judged_cell([error], paper.test_error, TOLERANCE, **kw)
                  for error in (run.final_test_error, run.best_test_error))
    return SweepRun(rate_name, run, paper, test, best)


def build_table_a2(sweep_dir: Path = Path("runs/darts/sweep")) -> TableA2Report:
    """Table A.2 from ``<sweep_dir>/<rate_name>/retrain/metrics.json``; absent rates print "–"."""
    found = {d.name: read_sweep_run(d / "retrain" / "metrics.json", d.name) for d in render.subdirs(sweep_dir)
             if render.finished(d / "retrain" / "metrics.json")}
    ordered = {name: found[name] for name in sorted(found, key=lambda n: -RATE_NAMES[n])}
    return TableA2Report(TABLE_A2, MappingProxyType(ordered), Path(sweep_dir), TOLERANCE)
