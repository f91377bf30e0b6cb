"""Table A.1 rebuilt: IIM and shrinking ablated on NAS-Bench-201 (IS-DARTS vs I-DARTS vs S-DARTS).

Reads the lookup stage's ``results/nb201_{isdarts,idarts,sdarts}.json`` and prints the six NB201
accuracies of each method over its seeds beside the paper's single numbers (no std); rows are
built as Table 1's, and only paper-profile runs are judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from isdarts.benchmark.nb201 import ACCURACY_KEYS
from isdarts.errors import ReportError
from isdarts.report import render, table1
from isdarts.report.paper import TABLE_A1, AblationRow
from isdarts.report.render import MISSING, fmt_num

# The ablation's methods in the paper's row order; IS-DARTS is read from the same file as Table 1's.
LABELS: Mapping[str, str] = MappingProxyType({"isdarts": "IS-DARTS", "idarts": "I-DARTS", "sdarts": "S-DARTS"})

# The same ±1 pp of accuracy Table 1 uses: the same benchmark numbers, so the same yardstick.
TOLERANCE: float = table1.TOLERANCES[ACCURACY_KEYS[0]]

CSV_COLUMNS: tuple[str, ...] = ("source", "method", "profile", "n_runs", "seeds", "cost", "cost_unit",
                                *table1.ACCURACY_COLUMNS)


@dataclass(frozen=True)
class TableA1Report:
    """Everything Table A.1 prints; ``source`` is the results folder the files were looked for in."""

    paper_rows: tuple[AblationRow, ...]
    reproduced: tuple[table1.AccuracyRow, ...]
    source: Path
    tolerance: float
    stem = "table_a1"

    def markdown(self) -> str:
        notes = [row.note(with_device=False) for row in self.reproduced]
        absent = [f"{label} (`{self.source / f'nb201_{m}.json'}`)" for m, label in LABELS.items()
                  if m not in {row.method for row in self.reproduced}]
        if notes and absent:
            notes.append(f"- not run: {', '.join(absent)}; run `dvc repro`")
        looked_for = ", ".join(f"nb201_{m}.json" for m in LABELS)
        rows = [["paper", p.method, "paper", MISSING, MISSING, *(fmt_num(p.accuracies[k]) for k in ACCURACY_KEYS)]
                for p in self.paper_rows]
        return render.page(
            "Table A.1 — ablation on NAS-Bench-201: IS-DARTS vs I-DARTS vs S-DARTS",
            "Paper: IS-DARTS (AAAI 2024), Table A.1 — accuracy (%) of the cell searched on CIFAR-10, single numbers "
            "(no std). I-DARTS is IIM without shrinking, S-DARTS shrinking without IIM (§3.5; the appendix swaps the "
            "two names). Reproduced rows: the NB201 benchmark's 200-epoch accuracies of each searched cell, mean±std "
            "(sample std) over our seeds; search cost is the mean per run, in the unit it was measured in.",
            notes=notes, empty=render.no_runs_line(self.source) + f" (looked for {looked_for})",
            unjudged=[(r.label, r.profile) for r in self.reproduced if not render.comparable(r.profile,
                                                                                              r.paper_settings)],
            verdict=render.verdict_rule("cell", self.tolerance, difference="our mean − paper number"),
            tolerance=self.tolerance,
            table=render.markdown_table(table1.ACCURACY_HEADER, rows + [r.md_row() for r in self.reproduced],
                                        table1.ACCURACY_ALIGN),
            tail=render.misses(c for row in self.reproduced for c in row.misses()),
        )

    def csv(self) -> str:
        rows = [render.padded(CSV_COLUMNS, source="paper", method=p.method, profile="paper",
                              **table1.given_csv(p.accuracies)) for p in self.paper_rows]
        return render.csv_text(CSV_COLUMNS, rows + [row.csv_row(with_seeds=True) for row in self.reproduced])


def build_table_a1(results_dir: Path = Path("results")) -> TableA1Report:
    """Table A.1 from ``results/nb201_<method>.json`` of isdarts, idarts and sdarts (those that exist)."""
    results_dir = Path(results_dir)
    rows = []
    for method, label in LABELS.items():
        path = results_dir / f"nb201_{method}.json"
        if path.is_file():
            result = table1.read_result(path, LABELS)
            if result.method != method:
                raise ReportError(f"{path}: key 'method' is {result.method!r} but the file is named for {method!r}")
            paper = next((row.accuracies for row in TABLE_A1 if row.method == label), None)
            rows.append(table1.accuracy_row(result, label, paper, TOLERANCE))
    return TableA1Report(TABLE_A1, tuple(rows), results_dir, TOLERANCE)
