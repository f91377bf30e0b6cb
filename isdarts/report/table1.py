"""Table 1 rebuilt: NAS-Bench-201 searched on CIFAR-10, the paper's rows beside ours.

Each lookup result file (one per method) becomes a row judged cell by cell against the paper, beside reference
rows from the NB201 table (the all-skip collapse cell, the per-column optimum). Table A.1 shares the rows and columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from isdarts.benchmark.nb201 import ACCURACY_KEYS, ACCURACY_LABELS, Nb201Table, default_table
from isdarts.errors import ReportError
from isdarts.records import Nb201Result
from isdarts.report import paper_subset, render
from isdarts.report.paper import (
    TABLE1,
    TABLE1_COPIED,
    TABLE1_COST_UNIT,
    TABLE1_OURS,
    TABLE1_SEEDS,
    PaperCell,
    Table1Row,
)
from isdarts.report.render import COST, DISPLAY_LABELS, JUDGED, Cell, JudgedCell, Row, col
from isdarts.report.runs import Reproduced

# Reproduced methods (the paper data's table1.ours), in the order their rows are printed (input order must not matter).
METHOD_LABELS: Mapping[str, str] = MappingProxyType({m: DISPLAY_LABELS[m] for m in TABLE1_OURS})

# The paper's mean accuracies by paper row label, and by our method: what our rows are judged against.
PAPER_MEANS = MappingProxyType({p.method: {k: p.cells[k].mean for k in ACCURACY_KEYS} for p in TABLE1})
PAPER_BY_METHOD = MappingProxyType({m: PAPER_MEANS[row] for m, row in TABLE1_OURS.items() if row is not None})

# |our mean − paper mean| allowed in every column, in percentage points of accuracy.
TOLERANCE = 1.0

# DARTS's collapse on NB201: every edge a skip connection (C10 test 54.30 in the paper).
ALL_SKIP_ARCH = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"

HEAD = (col("source", "Source"), col("method", "Method"), col("profile", "Profile"), col("n_runs", "Runs", "r"))
ACCURACIES = tuple(col(key, ACCURACY_LABELS[key], "r", JUDGED) for key in ACCURACY_KEYS)
COLUMNS = (*HEAD, COST, *ACCURACIES)


def given_row(source: str, method: str, profile: Cell | str, values: Mapping[str, PaperCell | float],
              **cells: Cell) -> Row:
    """A row whose accuracies are printed as given, without a verdict: the paper's (a bare number has no std) or
    the NB201 table's."""
    return {"source": source, "method": method, "profile": profile, **cells,
            **{k: render.number(*((c.mean, c.std) if isinstance(c, PaperCell) else (c,))) for k, c in values.items()}}


@dataclass(frozen=True)
class AccuracyRow(Reproduced):
    """One method's reproduced NB201 row, from one lookup result file, judged against the paper's accuracies."""

    result: Nb201Result
    label: str
    paper: Mapping[str, float | None] | None  # None: the paper has no row for this method

    setting = property(lambda self: self.result)
    runs = property(lambda self: self.result.runs)
    cost_unit = property(lambda self: self.result.cost_unit)

    @property
    def cells(self) -> dict[str, JudgedCell]:
        """One judged cell per accuracy key."""
        return {key: self.judge([getattr(run.accuracies, key) for run in self.runs],
                                None if self.paper is None else self.paper[key], TOLERANCE) for key in ACCURACY_KEYS}

    @property
    def cost_hours(self) -> float:
        """Mean search hours per run, in cost_unit as measured."""
        return render.summarize([run.search_hours for run in self.runs]).mean

    def judged_cells(self) -> dict[str, JudgedCell]:
        return {ACCURACY_LABELS[key]: cell for key, cell in self.cells.items()}

    def note(self, with_device: bool) -> str:
        return (f"{self.note_head()}, search cost measured in {self.cost_unit}"
                f"{self.devices() if with_device else ''}. {self.result.profile_note}")

    def row(self) -> Row:
        return {"source": "ours", "method": self.label, "profile": self.profile, "n_runs": str(len(self.runs)),
                "seeds": " ".join(map(str, self.seeds)), "cost": render.cost(self.cost_hours, self.cost_unit, "hours"),
                **{key: judged.cell for key, judged in self.cells.items()}}


def read_row(path: Path, labels: Mapping[str, str], paper: Mapping[str, Mapping[str, float | None]]) -> AccuracyRow:
    """A lookup result file as a row: its method must be a key of ``labels`` (the methods the table prints), and
    its accuracies are judged against ``paper[method]`` (no such key: the paper has no such row)."""
    result = Nb201Result.read(path)
    if result.method not in labels:
        raise ReportError(f"{path}: key 'method' has unknown method {result.method!r}; "
                          f"expected one of {', '.join(labels)}")
    return AccuracyRow(result, labels[result.method], paper.get(result.method))


def references(benchmark: Nb201Table) -> dict[str, Mapping[str, float]]:
    """The rows read from the NB201 benchmark table, not from any search: label -> accuracies."""
    skip = benchmark.lookup(ALL_SKIP_ARCH).accuracies()
    return {"all-skip cell (DARTS collapse)": MappingProxyType({k: skip[k] for k in ACCURACY_KEYS}),
            "NB201 optimum (column maxima)": MappingProxyType(
                {key: benchmark.optimum(key).accuracies()[key] for key in ACCURACY_KEYS})}


COPIED_MARK = "†"


def _paper_cost(p: Table1Row) -> Cell:
    """A paper row's cost, marked where the row was copied from the NAS-Bench-201 paper."""
    cost = render.cost(p.cost_hours, TABLE1_COST_UNIT, "hours")
    return Cell(f"{cost.md} {COPIED_MARK}", cost.csv) if p.method in TABLE1_COPIED else cost


def build_table1(result_files: Sequence[Path], benchmark: Nb201Table | None = None,
                 subset_rows: Sequence[paper_subset.SubsetRow] = ()) -> render.Report:
    """Table 1 from the lookup stage's result files (one per method, any order); ``benchmark`` for the references.
    ``subset_rows`` (paper_subset.read_rows) of the methods with a paper row print beside them, compared with it
    but not judged."""
    rows: dict[str, AccuracyRow] = {}
    sources: dict[str, Path] = {}
    for path in map(Path, result_files):
        row = read_row(path, METHOD_LABELS, PAPER_BY_METHOD)
        if row.method in sources:
            raise ReportError(f"{path}: key 'method' {row.method!r} already read from {sources[row.method]}")
        rows[row.method], sources[row.method] = row, path
    ours = [rows[m] for m in METHOD_LABELS if m in rows]
    refs = references(benchmark if benchmark is not None else default_table())
    subset = [row for row in subset_rows if row.method in PAPER_BY_METHOD]
    return render.report(
        "table1", COLUMNS,
        [*(given_row("paper", p.method, "paper", p.cells, cost=_paper_cost(p)) for p in TABLE1),
         *(row.row() for row in ours),
         *(row.row(PAPER_BY_METHOD[row.method]) for row in subset),
         *(given_row("reference", label, Cell("NB201 table"), accuracies) for label, accuracies in refs.items())],
        ours, "Table 1 — NAS-Bench-201, searched on CIFAR-10",
        f"Paper: IS-DARTS (AAAI 2024), Table 1 — accuracy (%) of the searched cell, mean±std over {TABLE1_SEEDS} "
        f"seeds; search cost in {TABLE1_COST_UNIT}. Reproduced rows: accuracies are the NB201 benchmark's "
        "200-epoch values of each searched cell, mean±std (sample std) over our seeds; search cost is the mean "
        "per run, in the unit it was measured in.",
        notes=[row.note(with_device=True) for row in ours], empty="No reproduced runs were given.",
        # Table 1 states that it judges "runs with the paper's settings", so only those are flagged here.
        unjudged=[row for row in ours if not row.paper_settings],
        what="cell", judged="runs with the paper's settings", tolerance=TOLERANCE,
        compared=paper_subset.compared_lines(subset), compared_rows=subset,
        tail=[f"{COPIED_MARK} The paper's {', '.join(TABLE1_COPIED)} rows, values and costs, match the NAS-Bench-201 "
              "paper's benchmark table: they were copied from it, so their cost is not an RTX 3090 timing.",
              f"Reference rows are read from the NB201 benchmark table: the all-skip cell is `{ALL_SKIP_ARCH}`; "
              "the optimum row takes each column's maximum over all cells (the best cell differs between columns).",
              "How each search got there: `figures/nb201_collapse.png` draws, for every method and seed, the "
              "benchmark CIFAR-10 test accuracy of the cell the search would have returned had it stopped after "
              "each epoch, and its share of parameter-free edges, against weight steps (= α steps for the DARTS "
              "family); `dvc plots show` draws the same from `plots/nb201_search.csv`."],
    )
