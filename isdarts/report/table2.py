"""Table 2 rebuilt: the DARTS search space on CIFAR-10, the paper's rows beside our retrained cells.

Reads ``runs/darts/retrain/<method>/seed_<s>/metrics.json``; a row per method and profile holds the final-epoch
test error (what the run ends with) with the best epoch's beside it (the official code's log reports the best),
the params, and the search cost in days of whatever device it was measured on. Only paper-profile rows are judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from isdarts.records import RetrainMetrics
from isdarts.report import render, runs
from isdarts.report.paper import CLAIMS, TABLE2, TABLE2_COST_UNIT, TABLE2_OURS, Table2Row
from isdarts.report.render import COST, DISPLAY_LABELS, JUDGED, SPREAD, JudgedCell, Row, col, fmt_num

# |our mean − paper mean| allowed, in percentage points of test error. The paper's gradient-based
# rows lie within ~0.5 pp of each other, so a looser bound could not tell the methods apart.
TOLERANCE = 0.3

# Our method -> the paper's row it is compared with (the paper data's table2.ours; no row: not judged).
PAPER_LABELS: Mapping[str, str] = MappingProxyType({m: row for m, row in TABLE2_OURS.items() if row is not None})

COLUMNS = (col("source", "Source"), col("architecture", "Architecture"), col("profile", "Profile"),
           col("n_runs", "Runs", "r"), col("seeds"), col("test_error", "Test err (%)", "r", JUDGED),
           col("best_error", "Best-epoch err (%)", "r", JUDGED), col("params_m", "Params (M)", "r", SPREAD), COST,
           col("method", "Method"))


@dataclass(frozen=True)
class RetrainRow(runs.DartsRow):
    """One reproduced row: its final and best-epoch errors judged against the paper's row, and its size."""

    paper: Table2Row | None

    def error(self, values: list[float]) -> JudgedCell:
        return self.judge(values, self.paper.test_error.mean if self.paper else None, TOLERANCE)

    test_error = property(lambda self: self.error([r.final_test_error for r in self.runs]))
    best_error = property(lambda self: self.error([r.best_test_error for r in self.runs]))
    params_m = property(lambda self: render.summarize([r.params_m for r in self.runs]))

    def judged_cells(self) -> dict[str, JudgedCell]:
        return {"final error": self.test_error, "best-epoch error": self.best_error}

    def row(self) -> Row:
        return {**super().row(), "test_error": self.test_error.cell, "best_error": self.best_error.cell,
                "params_m": render.spread(self.params_m)}

    def note(self) -> list[str]:
        data = self.distinct(lambda r: f"{r.train_images} training / {r.test_images} test images at {r.image_size} px")
        return [self.darts_note("retrained", f"{data}{self.devices()}"),
                *(f"  - seed {r.seed}: final error {fmt_num(r.final_test_error)} %, best {fmt_num(r.best_test_error)} "
                  f"% (epoch {r.best_epoch}), {fmt_num(r.params_m)} M params, genotype `{r.genotype}`"
                  for r in self.runs)]


def retrain_row(seeds: Sequence[RetrainMetrics], where: str) -> RetrainRow:
    """One row from the seeds of one method and profile, beside the paper's row for that method."""
    method = seeds[0].method
    paper = next((row for row in TABLE2 if row.architecture == PAPER_LABELS.get(method)), None)
    return RetrainRow(DISPLAY_LABELS[method], tuple(seeds), *runs.search_cost_days(seeds, f"{where}/{method}"), paper)


def build_table2(retrain_dir: Path = Path("runs/darts/retrain")) -> render.Report:
    """Table 2 from the retrain stage's outputs; an absent or empty folder gives the paper rows only."""
    ours = [retrain_row(g, str(retrain_dir)) for g in runs.group_by_setting(RetrainMetrics.collect(retrain_dir))]
    acc = CLAIMS.table2_isdarts_accuracy
    return runs.darts_report(
        "table2", COLUMNS,
        (runs.paper_row(p, TABLE2_COST_UNIT, test_error=render.number(p.test_error.mean, p.test_error.std),
                        params_m=render.number(p.params_m.mean, p.params_m.std)) for p in TABLE2),
        ours, retrain_dir, "Table 2 — DARTS search space, CIFAR-10",
        "Paper: IS-DARTS (AAAI 2024), Table 2 — test error (%) of the searched cell retrained on CIFAR-10, "
        f"params (M), search cost in {TABLE2_COST_UNIT}; its IS-DARTS row is the mean of 4 runs "
        f"({fmt_num(acc.mean)}±{fmt_num(acc.std)} % accuracy). Reproduced rows: final-epoch test error, "
        "mean±std (sample std) over our seeds, with the best epoch's error beside it (the official code's "
        "log reports the best epoch, so the paper's number may be a best-epoch one); params mean±std; "
        "search cost = mean search hours / 24, in the unit it was measured in.",
        tolerance=TOLERANCE,
    )
