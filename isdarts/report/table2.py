"""Table 2 rebuilt: the DARTS search space on CIFAR-10, the paper's rows beside our retrained cells.

Reads the retrain stage's ``runs/darts/retrain/<method>/seed_<s>/metrics.json`` files and folds the
seeds of one method and profile into one row: the final-epoch test error (what the run ends with)
with the best epoch's error beside it (the official code's log reports the best), the params, and
the search cost in days of whatever device it was measured on. Only paper-profile rows are judged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from isdarts.io import atomic_write_text
from isdarts.report.paper import CLAIMS, TABLE2, TABLE2_COST_UNIT, Table2Row
from isdarts.report.tables import (
    DISPLAY_LABELS,
    MISSING,
    JudgedCell,
    ReportError,
    RunInfo,
    Summary,
    comparable,
    csv_text,
    fmt_csv_num,
    fmt_csv_sig,
    fmt_judged,
    fmt_mean_std,
    fmt_num,
    fmt_paper,
    fmt_sig,
    group_by_setting,
    judged_cell,
    load_json,
    markdown_table,
    no_runs_line,
    not_comparable_warning,
    read_run_info,
    require,
    require_number,
    search_cost_days,
    seed_dirs,
    setting_text,
    summarize,
    unique,
    verdict_legend,
)

__all__ = [
    "CSV_COLUMNS",
    "PAPER_LABELS",
    "TOLERANCE",
    "RetrainRun",
    "Table2Ours",
    "Table2Report",
    "build_table2",
    "collect_retrain_runs",
    "parse_retrain_metrics",
    "read_retrain_metrics",
    "write_table2",
]

log = logging.getLogger(__name__)

# |our mean − paper mean| allowed, in percentage points of test error. The paper's gradient-based
# rows lie within ~0.5 pp of each other, so a looser bound could not tell the methods apart.
TOLERANCE = 0.3

# Our method -> the paper's row it is compared with (Table 2 has no Λ-, I- or S-DARTS row).
PAPER_LABELS: Mapping[str, str] = MappingProxyType({
    "isdarts": "IS-DARTS",
    "darts1": "DARTS (1st)",
    "darts2": "DARTS (2nd)",
})

CSV_COLUMNS: tuple[str, ...] = (
    "source", "architecture", "profile", "n_runs", "seeds",
    "test_error_mean", "test_error_std", "test_error_verdict",
    "best_error_mean", "best_error_std", "best_error_verdict",
    "params_m_mean", "params_m_std", "cost", "cost_unit", "method",
)


@dataclass(frozen=True)
class RetrainRun:
    """One seed's retrained cell: its errors, size and the data it was trained on."""

    info: RunInfo
    epochs: int
    final_error: float
    best_error: float
    best_epoch: int
    params_m: float
    device_name: str | None
    image_size: int
    train_images: int
    test_images: int


@dataclass(frozen=True)
class Table2Ours:
    """One reproduced row: the seeds of one method under one profile."""

    method: str
    label: str
    profile: str
    paper_settings: bool
    runs: tuple[RetrainRun, ...]
    paper: Table2Row | None
    test_error: JudgedCell
    best_error: JudgedCell
    params_m: Summary
    cost_days: float | None
    cost_unit: str | None

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(run.info.seed for run in self.runs)

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(sorted({run.device_name for run in self.runs if run.device_name}))

    @property
    def mismatches(self) -> list[str]:
        return unique([m for run in self.runs for m in run.info.paper_mismatches])


@dataclass(frozen=True)
class Table2Report:
    """Everything Table 2 prints; ``source`` is the folder the runs were looked for in."""

    paper_rows: tuple[Table2Row, ...]
    reproduced: tuple[Table2Ours, ...]
    source: Path
    tolerance: float

    def markdown(self) -> str:
        return _render_markdown(self)

    def csv(self) -> str:
        return _render_csv(self)


# ---------------------------------------------------------------- reading


def read_retrain_metrics(path: Path, method: str | None = None, seed: int | None = None) -> RetrainRun:
    """Parse and check one retrain metrics.json; problems raise ReportError naming the file and key."""
    path = Path(path)
    return parse_retrain_metrics(load_json(path), str(path), method, seed)


def parse_retrain_metrics(data: Mapping[str, Any], where: str, method: str | None = None,
                          seed: int | None = None) -> RetrainRun:
    """Check an already-loaded retrain metrics object; ``where`` names its file in errors."""
    info = read_run_info(data, where, method, seed)
    device = data.get("device_name")
    if device is not None and not isinstance(device, str):
        raise ReportError(f"{where}: key 'device_name' must be str, got {type(device).__name__}")
    return RetrainRun(
        info=info,
        epochs=require(data, "epochs", int, where),
        final_error=require_number(data, "final_test_error", where),
        best_error=require_number(data, "best_test_error", where),
        best_epoch=require(data, "best_epoch", int, where),
        params_m=require_number(data, "params_m", where),
        device_name=device,
        image_size=require(data, "image_size", int, where),
        train_images=require(data, "train_images", int, where),
        test_images=require(data, "test_images", int, where),
    )


def collect_retrain_runs(retrain_dir: Path) -> list[RetrainRun]:
    """Every ``<method>/seed_<s>/metrics.json`` under retrain_dir, in (method, seed) order.

    A seed folder without metrics.json is a run that has not finished (its checkpoint persists);
    it is left out with a warning rather than failing the whole report.
    """
    runs = []
    root = Path(retrain_dir)
    method_dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for method_dir in method_dirs:
        for seed, seed_dir in seed_dirs(method_dir):
            metrics = seed_dir / "metrics.json"
            if not metrics.is_file():
                log.warning("%s: no metrics.json (run not finished?); left out of the report", seed_dir)
                continue
            runs.append(read_retrain_metrics(metrics, method_dir.name, seed))
    return runs


def _paper_row(method: str) -> Table2Row | None:
    label = PAPER_LABELS.get(method)
    return next((row for row in TABLE2 if row.architecture == label), None)


def _ours(runs: Sequence[RetrainRun], where: str) -> Table2Ours:
    first = runs[0].info
    paper = _paper_row(first.method)
    judge_kw = {"profile": first.profile, "paper_settings": first.paper_settings}
    paper_error = paper.test_error.mean if paper else None
    cost_days, cost_unit = search_cost_days([run.info for run in runs], f"{where}/{first.method}")
    return Table2Ours(
        method=first.method, label=DISPLAY_LABELS[first.method], profile=first.profile,
        paper_settings=first.paper_settings, runs=tuple(runs), paper=paper,
        test_error=judged_cell([r.final_error for r in runs], paper_error, TOLERANCE, **judge_kw),
        best_error=judged_cell([r.best_error for r in runs], paper_error, TOLERANCE, **judge_kw),
        params_m=summarize([r.params_m for r in runs]),
        cost_days=cost_days, cost_unit=cost_unit,
    )


def build_table2(retrain_dir: Path = Path("runs/darts/retrain")) -> Table2Report:
    """Table 2 from the retrain stage's outputs; an absent or empty folder gives the paper rows only."""
    runs = collect_retrain_runs(retrain_dir)
    rows = tuple(_ours(group, str(retrain_dir)) for group in group_by_setting(runs, lambda r: r.info))
    return Table2Report(paper_rows=TABLE2, reproduced=rows, source=Path(retrain_dir), tolerance=TOLERANCE)


def write_table2(report: Table2Report, out_dir: Path) -> tuple[Path, Path]:
    """Write ``table2.md`` and ``table2.csv`` atomically into out_dir; returns both paths."""
    out_dir = Path(out_dir)
    md, csv = out_dir / "table2.md", out_dir / "table2.csv"
    atomic_write_text(md, report.markdown())
    atomic_write_text(csv, report.csv())
    return md, csv


# ---------------------------------------------------------------- rendering


def _cost(row: Table2Ours) -> str:
    return MISSING if row.cost_days is None else f"{fmt_sig(row.cost_days)} {row.cost_unit}"


def _row_intro(row: Table2Ours) -> list[str]:
    n = len(row.runs)
    seeds = ", ".join(str(s) for s in row.seeds)
    first = row.runs[0]
    epochs = ", ".join(unique([str(r.epochs) for r in row.runs]))
    data = ", ".join(unique([f"{r.train_images} training / {r.test_images} test images at {r.image_size} px"
                             for r in row.runs]))
    device = f" on {', '.join(row.devices)}" if row.devices else ""
    cost = (f"search cost measured in {first.info.search_cost_unit}" if row.cost_days is not None
            else "search cost not recorded for every seed")
    mismatches = row.mismatches
    differs = (f" Differs from the paper in: {'; '.join(mismatches)}." if mismatches
               else " Matches the paper's settings." if row.paper_settings else "")
    lines = [f"- **{row.label}**: {setting_text(row.profile, row.paper_settings)}, {n} run{'s' if n != 1 else ''} "
             f"(seed{'s' if n != 1 else ''} {seeds}), retrained {epochs} epochs on {data}{device}; {cost}.{differs}"]
    lines += [f"  - seed {r.info.seed}: final error {fmt_num(r.final_error)} %, best {fmt_num(r.best_error)} % "
              f"(epoch {r.best_epoch}), {fmt_num(r.params_m)} M params, genotype `{r.info.genotype}`"
              for r in row.runs]
    return lines


def _render_markdown(report: Table2Report) -> str:
    tol = report.tolerance
    acc = CLAIMS.table2_isdarts_accuracy
    out = [
        "# Table 2 — DARTS search space, CIFAR-10",
        "",
        "Paper: IS-DARTS (AAAI 2024), Table 2 — test error (%) of the searched cell retrained on CIFAR-10, "
        f"params (M), search cost in {TABLE2_COST_UNIT}; its IS-DARTS row is the mean of 4 runs "
        f"({fmt_num(acc.mean)}±{fmt_num(acc.std)} % accuracy). Reproduced rows: final-epoch test error, "
        "mean±std (sample std) over our seeds, with the best epoch's error beside it (the official code's "
        "log reports the best epoch, so the paper's number may be a best-epoch one); params mean±std; "
        "search cost = mean search hours / 24, in the unit it was measured in.",
        "",
    ]
    if report.reproduced:
        out += ["Reproduced:", ""] + [line for row in report.reproduced for line in _row_intro(row)] + [""]
    else:
        out += [no_runs_line(report.source), ""]
    not_paper = [row for row in report.reproduced if not comparable(row.profile, row.paper_settings)]
    if not_paper:
        out += [not_comparable_warning([r.label for r in not_paper], [r.profile for r in not_paper]), ""]
    out += [
        f"Verdict: a reproduced error passes when |our mean − paper mean| ≤ {tol:.1f} percentage point, "
        "and is judged only for paper-profile runs with the paper's settings.",
        "",
        "Legend: " + verdict_legend(tol),
        "",
        markdown_table(["Source", "Architecture", "Profile", "Runs", "Test err (%)", "Best-epoch err (%)",
                        "Params (M)", "Search cost", "Method"],
                       _md_rows(report), ["l", "l", "l", "r", "r", "r", "r", "r", "l"]),
    ]
    misses = [f"- {row.label} ({row.profile}), {name}: {cell.verdict.text}"
              for row in report.reproduced
              for name, cell in (("final error", row.test_error), ("best-epoch error", row.best_error))
              if cell.verdict.status == "fail"]
    if misses:
        out += ["Cells outside the tolerance:", "", *misses, ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _md_rows(report: Table2Report) -> list[list[str]]:
    rows = [
        ["paper", p.architecture, "paper", MISSING, fmt_mean_std(p.test_error.mean, p.test_error.std), MISSING,
         fmt_mean_std(p.params_m.mean, p.params_m.std),
         MISSING if p.cost_gpu_days is None else f"{fmt_paper(p.cost_gpu_days)} {TABLE2_COST_UNIT}", p.method]
        for p in report.paper_rows
    ]
    for r in report.reproduced:
        rows.append(["ours", r.label, r.profile, str(len(r.runs)), fmt_judged(r.test_error), fmt_judged(r.best_error),
                     fmt_mean_std(r.params_m.mean, r.params_m.std, n=r.params_m.n), _cost(r), "gradient"])
    return rows


def _render_csv(report: Table2Report) -> str:
    rows: list[list[str]] = []
    for p in report.paper_rows:
        rows.append(["paper", p.architecture, "paper", "", "",
                     fmt_csv_num(p.test_error.mean), fmt_csv_num(p.test_error.std), "", "", "", "",
                     fmt_csv_num(p.params_m.mean), fmt_csv_num(p.params_m.std),
                     fmt_csv_num(p.cost_gpu_days), TABLE2_COST_UNIT, p.method])
    for r in report.reproduced:
        t, b = r.test_error, r.best_error
        rows.append(["ours", r.label, r.profile, str(len(r.runs)), " ".join(str(s) for s in r.seeds),
                     fmt_csv_num(t.summary.mean), fmt_csv_num(t.summary.std), t.verdict.text,
                     fmt_csv_num(b.summary.mean), fmt_csv_num(b.summary.std), b.verdict.text,
                     fmt_csv_num(r.params_m.mean), fmt_csv_num(r.params_m.std),
                     fmt_csv_sig(r.cost_days), r.cost_unit or "", "gradient"])
    return csv_text(CSV_COLUMNS, rows)
