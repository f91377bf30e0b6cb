"""The one renderer every paper table uses: number formatting, statistics and verdicts, cells and columns, the page.

A table is data: ``Column``s and rows mapping column keys to ``Cell``s (markdown text and CSV values), so a table
module only says which numbers go where. CI diffs rebuilt reports against the committed ones: formatting is
fixed-precision and nothing here reads the clock.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from isdarts.io import atomic_write_text
from isdarts.registry import METHODS

MISSING = "–"  # the paper's own mark for "no number"

# Every method's label from the registry, in its order: the order reproduced rows of one table are printed in.
DISPLAY_LABELS: Mapping[str, str] = MappingProxyType({name: spec.label for name, spec in METHODS.items()})


# ---------------------------------------------------------------- formatting
def fmt_num(value: float | None, digits: int = 2) -> str:
    """Fixed-precision number, or the paper's "–" for None."""
    if value is None:
        return MISSING
    text = f"{value:.{digits}f}"
    # "-0.00" reads as a sign error in a table; it is zero at this precision.
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def fmt_mean_std(mean: float | None, std: float | None, digits: int = 2, n: int | None = None) -> str:
    """"mean±std"; just "mean" without a std; a single run (n=1) says so, lest its "±0.00" (no spread to measure)
    pass for the paper's "all seeds agree"."""
    if mean is None:
        return MISSING
    if n == 1:
        return f"{fmt_num(mean, digits)}±{fmt_num(0.0, digits)} (n=1)"
    return fmt_num(mean, digits) if std is None else f"{fmt_num(mean, digits)}±{fmt_num(std, digits)}"


def fmt_csv_num(value: float | None) -> str:
    """A number for CSV: rounded to 4 decimals (stable text), empty for None."""
    return "" if value is None else repr(round(float(value), 4))


def days_unit(hours_unit: str) -> str:
    """The unit a cost in ``hours_unit`` is in after dividing by 24; the measured device stays named."""
    return hours_unit.replace("hours", "days", 1) if "hours" in hours_unit else f"days of {hours_unit}"


# ---------------------------------------------------------------- statistics and verdicts
@dataclass(frozen=True)
class Summary:
    """Mean and sample std (ddof=1) of one column over seeds; std is None when n=1."""

    mean: float
    std: float | None
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample std; with a single value the std is undefined (None), not zero."""
    if not values:
        raise ValueError("no values to summarize")
    return Summary(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


VERDICT_MARKERS = MappingProxyType({"pass": "✓", "fail": "✗", "not_comparable": "~", "no_paper": "∅"})


@dataclass(frozen=True)
class Verdict:
    """How one reproduced cell compares with the paper (status: a VERDICT_MARKERS key); only "pass" reproduces."""

    status: str
    text: str
    marker = property(lambda self: VERDICT_MARKERS[self.status])


def judge(ours: float, paper: float | None, tolerance: float, *, comparable: bool,
          profile: str = "quick") -> Verdict:
    """Our mean against the paper's: within ±tolerance passes, and only for paper-setting runs."""
    if paper is None:
        return Verdict("no_paper", "no paper number")
    if not comparable:
        return Verdict("not_comparable", f"not comparable ({profile} profile)")
    diff = ours - paper
    if abs(diff) <= tolerance + 1e-9:  # the paper prints 2 decimals; don't fail on float noise
        return Verdict("pass", f"within ±{tolerance:.1f} of paper")
    return Verdict("fail", f"differs by {diff:+.2f} (outside ±{tolerance:.1f})")


@dataclass(frozen=True)
class JudgedCell:
    """Our summary of one column over seeds, the paper's mean for it (None: no paper number), the verdict."""

    summary: Summary
    paper: float | None
    verdict: Verdict

    @property
    def cell(self) -> Cell:
        """"mean±std marker" in markdown; mean, std and verdict text in CSV."""
        ours = spread(self.summary)
        return Cell(f"{ours.md} {self.verdict.marker}", (*ours.csv, self.verdict.text))


# ---------------------------------------------------------------- cells, columns, tables
@dataclass(frozen=True)
class Cell:
    """One cell in both renderings: its markdown text and its CSV values; values it leaves off the end of a column
    that spans several CSV columns are empty, so a paper number without a std or verdict lands in the mean column."""

    md: str = MISSING
    csv: tuple[str, ...] = ()


Row = Mapping[str, "Cell | str"]  # column key -> cell; a str is the same text in both renderings


def number(mean: float | None, std: float | None = None) -> Cell:
    """A number printed as given, without a verdict (the paper's, the NB201 table's, one run's): "mean±std"."""
    csv_values = (fmt_csv_num(mean),) if std is None else (fmt_csv_num(mean), fmt_csv_num(std))
    return Cell(fmt_mean_std(mean, std), csv_values)


def spread(summary: Summary, digits: int = 2) -> Cell:
    """A column summarised over our seeds (a single run says n=1): mean±std, then mean and std in CSV."""
    text = fmt_mean_std(summary.mean, summary.std, digits, n=summary.n)
    return Cell(text, (fmt_csv_num(summary.mean), fmt_csv_num(summary.std)))


# How a cost prints (markdown, CSV): a measured one to 3 significant digits (6 in CSV), since quick runs
# cost ~0.001 days and paper-scale ones hundreds; NB201 hours to 2 decimals; the paper's as transcribed.
COST_FORMATS: Mapping[str, tuple[Callable[[float], str], Callable[[float], str]]] = MappingProxyType({
    "measured": (lambda v: f"{v:.3g}", lambda v: f"{v:.6g}"), "hours": (fmt_num, fmt_csv_num),
    "paper": (lambda v: f"{v:g}", fmt_csv_num),
})


def cost(value: float | None, unit: str | None, style: str = "measured") -> Cell:
    """"<cost> <unit>" (or "–" without a cost) in markdown; the cost and its unit in CSV."""
    md, csv = COST_FORMATS[style]
    return Cell(MISSING, ("", unit or "")) if value is None else Cell(f"{md(value)} {unit}", (csv(value), unit or ""))


@dataclass(frozen=True)
class Column:
    """One column of a table: ``header`` in markdown (None: CSV only), ``csv`` its CSV columns (none: markdown only)."""

    key: str
    header: str | None
    csv: tuple[str, ...]
    align: str = "l"  # "l", "r" or "c"


JUDGED = ("mean", "std", "verdict")  # the CSV parts of a judged column
SPREAD = ("mean", "std")


def col(key: str, header: str | None = None, align: str = "l", parts: Sequence[str] = ()) -> Column:
    """A column keyed ``key``; with ``parts`` its CSV columns are ``<key>_<part>`` (see JUDGED), else ``key``."""
    return Column(key, header, tuple(f"{key}_{part}" for part in parts) or (key,), align)


COST = Column("cost", "Search cost", ("cost", "cost_unit"), "r")


def cell(row: Row, key: str) -> Cell:
    """The row's cell under ``key``; a column the row has no cell for prints "–" and empty CSV values."""
    value = row.get(key, Cell())
    return Cell(value, (value,)) if isinstance(value, str) else value


def csv_header(columns: Sequence[Column]) -> tuple[str, ...]:
    """The CSV header of a table: every column's CSV columns, in order."""
    return tuple(name for column in columns for name in column.csv)


def table_md(columns: Sequence[Column], rows: Sequence[Row]) -> str:
    """The markdown table of ``rows``; a row may hold cells the table does not print (Table 1 has no seeds)."""
    shown = [column for column in columns if column.header is not None]
    return markdown_table([c.header or "" for c in shown], [[cell(row, c.key).md for c in shown] for row in rows],
                          "".join(c.align for c in shown))


def table_csv(columns: Sequence[Column], rows: Sequence[Row]) -> str:
    """The CSV of ``rows``, each column's values padded with empty ones to its width; "\\n" ends every OS's lines."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_header(columns))
    for row in rows:
        values = []
        for column in columns:
            given = cell(row, column.key).csv
            if len(given) > len(column.csv):
                raise ValueError(f"column {column.key!r} has {len(column.csv)} CSV columns, its cell {given!r}")
            values += [*given, *[""] * (len(column.csv) - len(given))]
        writer.writerow(values)
    return buf.getvalue()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A GitHub markdown table; ``align`` holds "l", "r" or "c" per column (default: left)."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row has {len(row)} cells, header has {len(header)}: {row!r}")
    rule = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule[a] for a in align or "l" * len(header)) + "|"]
    # Pipes inside a cell (NB201 arch strings) would split the column.
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the page and the report
def no_runs_line(path: Path) -> str:
    """The line a table prints instead of our rows when the stage outputs are absent."""
    return f"**No reproduced runs found under `{path}`; run `dvc repro`.** Only the paper's rows are shown."


@dataclass(frozen=True)
class Report:
    """A built table, rendered: its file stem, both files' text, and the reproduced rows behind the numbers."""

    stem: str
    reproduced: tuple[Any, ...]
    markdown: str
    csv: str
    compared: tuple[Any, ...] = ()  # rows shown beside the paper's but never judged (isdarts.report.paper_subset)


def report(stem: str, columns: Sequence[Column], rows: Sequence[Row], reproduced: Sequence[Any], title: str,
           intro: str, *, notes: Sequence[str], empty: str, tolerance: float, what: str,
           difference: str = "our mean − paper mean", judged: str = "paper-profile runs with the paper's settings",
           warnings: Sequence[str] = (), tail: Sequence[str] = (), unjudged: Sequence[Any] | None = None,
           table: str | None = None, compared: Sequence[str] = (), compared_rows: Sequence[Any] = ()) -> Report:
    """``rows`` under ``columns`` as CSV and, on the page every table shares, as markdown (``table``: another
    layout): title, the paper's setting, our runs' notes (or ``empty``), warnings, which ``reproduced`` rows
    (runs.Reproduced) are not paper-scale (default: those not judged), the verdict rule (when a reproduced
    ``what`` passes, which runs are ``judged`` at all) and legend, the ``compared`` lines (rows shown beside the
    paper's under a rule of their own, ``compared_rows``, never judged), the table, the cells outside the
    tolerance."""
    out = [f"# {title}", "", intro, "", *(["Reproduced:", "", *notes] if notes else [empty]), "", *warnings]
    unjudged = [row for row in reproduced if not row.judged] if unjudged is None else unjudged
    if unjudged:
        out += [f"**The reproduced numbers for {', '.join(row.label for row in unjudged)} come from the "
                f"{', '.join(sorted({row.profile for row in unjudged}))} profile: they are not paper-scale numbers "
                "and are not compared with the paper.**", ""]
    tol, m = f"±{tolerance:.1f}", VERDICT_MARKERS
    legend = (f"{m['pass']} within {tol} of paper · {m['fail']} outside {tol} · "
              f"{m['not_comparable']} not comparable (not the paper profile) · {m['no_paper']} no paper number")
    verdict = (f"a reproduced {what} passes when |{difference}| ≤ {tolerance:.1f} percentage point, and is judged "
               f"only for {judged}.")
    out += [f"Verdict: {verdict}", "", f"Legend: {legend}", "", *compared, table or table_md(columns, rows)]
    misses = [f"- {name}: {c.verdict.text}" for row in reproduced for name, c in row.misses()
              if c.verdict.status == "fail"]
    out += ["Cells outside the tolerance:", "", *misses, ""] if misses else []
    markdown = "\n".join([*out, *tail]).rstrip("\n") + "\n"
    return Report(stem, tuple(reproduced), markdown, table_csv(columns, rows), tuple(compared_rows))


def write_table(table: Report, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.csv`` atomically into out_dir; returns both paths."""
    md, csv_path = Path(out_dir) / f"{table.stem}.md", Path(out_dir) / f"{table.stem}.csv"
    atomic_write_text(md, table.markdown)
    atomic_write_text(csv_path, table.csv)
    return md, csv_path
