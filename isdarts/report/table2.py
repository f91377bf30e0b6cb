"""Table 2 rebuilt: the DARTS search space on CIFAR-10, the paper's rows beside our retrained cells.

Reads ``runs/darts/retrain/<method>/seed_<s>/metrics.json`` and folds the seeds of one method and
profile into one row: the final-epoch test error (what the run ends with) with the best epoch's
error beside it (the official code's log reports the best), the params, and the search cost in
days of whatever device it was measured on. Only paper-profile rows are judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from isdarts.records import RetrainMetrics
from isdarts.report import render
from isdarts.report.paper import CLAIMS, TABLE2, TABLE2_COST_UNIT, Table2Row
from isdarts.report.render import MISSING, DartsRow, JudgedCell, Summary, fmt_csv_num, fmt_mean_std, fmt_num

# |our mean − paper mean| allowed, in percentage points of test error. The paper's gradient-based
# rows lie within ~0.5 pp of each other, so a looser bound could not tell the methods apart.
TOLERANCE = 0.3

# Our method -> the paper's row it is compared with (Table 2 has no Λ-, I- or S-DARTS row).
PAPER_LABELS: Mapping[str, str] = MappingProxyType({"isdarts": "IS-DARTS", "darts1": "DARTS (1st)",
                                                    "darts2": "DARTS (2nd)"})

CSV_COLUMNS: tuple[str, ...] = (
    "source", "architecture", "profile", "n_runs", "seeds",
    "test_error_mean", "test_error_std", "test_error_verdict",
    "best_error_mean", "best_error_std", "best_error_verdict",
    "params_m_mean", "params_m_std", "cost", "cost_unit", "method",
)


@dataclass(frozen=True)
class RetrainRow(DartsRow):
    """One reproduced row: its final and best-epoch errors judged against the paper's row, and its size."""

    paper: Table2Row | None
    test_error: JudgedCell
    best_error: JudgedCell
    params_m: Summary

    def note(self) -> list[str]:
        data = ", ".join(render.unique(f"{r.train_images} training / {r.test_images} test images at {r.image_size} px"
                                       for r in self.runs))
        epochs = ", ".join(render.unique(str(r.epochs) for r in self.runs))
        return [self.darts_note(f"retrained {epochs} epochs on {data}{render.devices_text(self.runs)}"),
                *(f"  - seed {r.seed}: final error {fmt_num(r.final_test_error)} %, best {fmt_num(r.best_test_error)} "
                  f"% (epoch {r.best_epoch}), {fmt_num(r.params_m)} M params, genotype `{r.genotype}`"
                  for r in self.runs)]


@dataclass(frozen=True)
class Table2Report:
    """Everything Table 2 prints; ``source`` is the folder the runs were looked for in."""

    paper_rows: tuple[Table2Row, ...]
    reproduced: tuple[RetrainRow, ...]
    source: Path
    tolerance: float
    stem = "table2"

    def markdown(self) -> str:
        acc = CLAIMS.table2_isdarts_accuracy
        rows = [["paper", p.architecture, "paper", MISSING, fmt_mean_std(p.test_error.mean, p.test_error.std),
                 MISSING, fmt_mean_std(p.params_m.mean, p.params_m.std),
                 render.paper_cost(p.cost_gpu_days, TABLE2_COST_UNIT), p.method] for p in self.paper_rows]
        rows += [r.md_row(r.profile, r.test_error.markdown(), r.best_error.markdown(),
                          render.fmt_summary(r.params_m)) for r in self.reproduced]
        header = ["Source", "Architecture", "Profile", "Runs", "Test err (%)", "Best-epoch err (%)", "Params (M)",
                  "Search cost", "Method"]
        return render.page(
            "Table 2 — DARTS search space, CIFAR-10",
            "Paper: IS-DARTS (AAAI 2024), Table 2 — test error (%) of the searched cell retrained on CIFAR-10, "
            f"params (M), search cost in {TABLE2_COST_UNIT}; its IS-DARTS row is the mean of 4 runs "
            f"({fmt_num(acc.mean)}±{fmt_num(acc.std)} % accuracy). Reproduced rows: final-epoch test error, "
            "mean±std (sample std) over our seeds, with the best epoch's error beside it (the official code's "
            "log reports the best epoch, so the paper's number may be a best-epoch one); params mean±std; "
            "search cost = mean search hours / 24, in the unit it was measured in.",
            notes=[line for row in self.reproduced for line in row.note()], empty=render.no_runs_line(self.source),
            unjudged=[(r.label, r.profile) for r in self.reproduced if not r.judged],
            verdict=render.verdict_rule("error", self.tolerance), tolerance=self.tolerance,
            table=render.markdown_table(header, rows, "lllrrrrrl"),
            tail=render.misses((f"{r.label} ({r.profile}), {name}", cell) for r in self.reproduced
                               for name, cell in (("final error", r.test_error), ("best-epoch error", r.best_error))),
        )

    def csv(self) -> str:
        rows = [render.padded(CSV_COLUMNS, source="paper", architecture=p.architecture, profile="paper",
                              test_error_mean=fmt_csv_num(p.test_error.mean),
                              test_error_std=fmt_csv_num(p.test_error.std), params_m_mean=fmt_csv_num(p.params_m.mean),
                              params_m_std=fmt_csv_num(p.params_m.std), cost=fmt_csv_num(p.cost_gpu_days),
                              cost_unit=TABLE2_COST_UNIT, method=p.method) for p in self.paper_rows]
        rows += [["ours", r.label, r.profile, str(len(r.runs)), " ".join(map(str, r.seeds)), *r.test_error.csv(),
                  *r.best_error.csv(), fmt_csv_num(r.params_m.mean), fmt_csv_num(r.params_m.std),
                  render.fmt_csv_sig(r.cost_days), r.cost_unit or "", "gradient"] for r in self.reproduced]
        return render.csv_text(CSV_COLUMNS, rows)


def retrain_row(runs: Sequence[RetrainMetrics], where: str) -> RetrainRow:
    """One row from the seeds of one method and profile."""
    first = runs[0]
    paper = next((row for row in TABLE2 if row.architecture == PAPER_LABELS.get(first.method)), None)
    paper_error = paper.test_error.mean if paper else None
    kw = {"profile": first.profile, "paper_settings": first.paper_settings}
    return RetrainRow(
        render.DISPLAY_LABELS[first.method], tuple(runs), *render.search_cost_days(runs, f"{where}/{first.method}"),
        paper=paper, params_m=render.summarize([r.params_m for r in runs]),
        test_error=render.judged_cell([r.final_test_error for r in runs], paper_error, TOLERANCE, **kw),
        best_error=render.judged_cell([r.best_test_error for r in runs], paper_error, TOLERANCE, **kw),
    )


def build_table2(retrain_dir: Path = Path("runs/darts/retrain")) -> Table2Report:
    """Table 2 from the retrain stage's outputs; an absent or empty folder gives the paper rows only."""
    groups = render.group_by_setting(render.collect_runs(retrain_dir, RetrainMetrics))
    return Table2Report(TABLE2, tuple(retrain_row(g, str(retrain_dir)) for g in groups), Path(retrain_dir), TOLERANCE)
