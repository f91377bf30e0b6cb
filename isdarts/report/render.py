"""What every paper table shares: number formatting, statistics and verdicts, the page layout, writing.

Every report must be byte-identical for identical inputs (CI diffs the rebuilt markdown against the
committed one), so formatting is fixed-precision and nothing here reads the clock.
"""

from __future__ import annotations

import csv
import io
import logging
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from isdarts.errors import ReportError
from isdarts.io import atomic_write_text
from isdarts.records import DartsRun, Record

log = logging.getLogger(__name__)
R = TypeVar("R", bound=Record)

MISSING = "–"  # the paper's own mark for "no number"

# Every method the pipeline runs, in the order reproduced rows are printed.
DISPLAY_LABELS: Mapping[str, str] = MappingProxyType({
    "isdarts": "IS-DARTS", "darts1": "DARTS (1st)", "darts2": "DARTS (2nd)",
    "lambda_darts": "Λ-DARTS", "idarts": "I-DARTS", "sdarts": "S-DARTS",
})

# ---------------------------------------------------------------- formatting


def fmt_num(value: float | None, digits: int = 2) -> str:
    """Fixed-precision number, or the paper's "–" for None."""
    if value is None:
        return MISSING
    text = f"{value:.{digits}f}"
    # "-0.00" reads as a sign error in a table; it is zero at this precision.
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def fmt_mean_std(mean: float | None, std: float | None, digits: int = 2, n: int | None = None) -> str:
    """"mean±std"; just "mean" without a std; a single run (n=1) prints ±0.00 and says n=1.

    A single run has no spread to measure, so its "±0.00" must not pass for the paper's "all seeds agree".
    """
    if mean is None:
        return MISSING
    if n == 1:
        return f"{fmt_num(mean, digits)}±{fmt_num(0.0, digits)} (n=1)"
    return fmt_num(mean, digits) if std is None else f"{fmt_num(mean, digits)}±{fmt_num(std, digits)}"


def fmt_summary(summary: Summary, digits: int = 2) -> str:
    """A column summarised over our seeds, as fmt_mean_std prints it (a single run says n=1)."""
    return fmt_mean_std(summary.mean, summary.std, digits, n=summary.n)


def fmt_csv_num(value: float | None) -> str:
    """A number for CSV: rounded to 4 decimals (stable text), empty for None."""
    return "" if value is None else repr(round(float(value), 4))


def fmt_csv_sig(value: float | None) -> str:
    """A measured cost for CSV: 6 significant digits (quick runs cost ~0.001 days), empty for None."""
    return "" if value is None else f"{value:.6g}"


def fmt_sig(value: float | None, digits: int = 3) -> str:
    """``digits`` significant digits, for measured costs that range from 0.001 CPU-days to hundreds."""
    return MISSING if value is None else f"{value:.{digits}g}"


def fmt_cost(value: float | None, unit: str | None, fmt: Callable[[float], str] = fmt_sig) -> str:
    """"<cost> <unit>", or "–" without a cost; paper costs print as transcribed (``fmt=lambda v: f"{v:g}"``)."""
    return MISSING if value is None else f"{fmt(value)} {unit}"


def paper_cost(value: float | None, unit: str) -> str:
    """A paper cost as transcribed (2000, 0.17, 1.5): shortest text, no padding zeros."""
    return fmt_cost(value, unit, lambda v: f"{v:g}")


def days_unit(hours_unit: str) -> str:
    """The unit a cost in ``hours_unit`` is in after dividing by 24; the measured device stays named."""
    return hours_unit.replace("hours", "days", 1) if "hours" in hours_unit else f"days of {hours_unit}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` holds "l", "r" or "c" per column (default: left)."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row has {len(row)} cells, header has {len(header)}: {row!r}")
    rule = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule[a] for a in align or "l" * len(header)) + "|"]
    # Pipes inside a cell (NB201 arch strings) would split the column.
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """CSV with "\\n" line ends, so the file is the same on every OS."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def padded(columns: Sequence[str], **cells: str) -> list[str]:
    """A sparse CSV row (a paper or reference row) in ``columns`` order from its cells named by column; the rest empty.

    Named cells cannot shift into the wrong column as a list padded with runs of "" can; a name the
    table has no column for is a ValueError.
    """
    if unknown := set(cells) - set(columns):
        raise ValueError(f"no such CSV columns: {', '.join(sorted(unknown))}")
    return [cells.get(column, "") for column in columns]


def runs_text(seeds: Sequence[int]) -> str:
    """"2 runs (seeds 0, 1)": how a reproduced row's note counts its runs."""
    s = "" if len(seeds) == 1 else "s"
    return f"{len(seeds)} run{s} (seed{s} {', '.join(map(str, seeds))})"


def setting_text(profile: str, paper_settings: bool) -> str:
    """How a row's profile is introduced in the markdown notes."""
    return f"profile `{profile}` ({'paper settings' if paper_settings else 'not the paper settings'})"


def differs_text(mismatches: Sequence[str], paper_settings: bool | None = None) -> str:
    """The sentence a note ends with: how the run differs from the paper (None: say nothing when it matches)."""
    if mismatches:
        return f" Differs from the paper in: {'; '.join(mismatches)}."
    return " Matches the paper's settings." if paper_settings else ""


def devices_text(runs: Iterable[Any]) -> str:
    """" on <device>, <device>" for the runs that recorded a device name; empty when none did."""
    devices = sorted({run.device_name for run in runs if run.device_name})
    return f" on {', '.join(devices)}" if devices else ""


def unique(items: Iterable[str]) -> list[str]:
    """Items without repeats, first occurrence first (stable text for notes gathered over seeds)."""
    return list(dict.fromkeys(items))


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
    """How one reproduced cell compares with the paper; only status "pass" counts as reproduced."""

    status: str  # "pass" | "fail" | "not_comparable" | "no_paper"
    text: str

    @property
    def marker(self) -> str:
        return VERDICT_MARKERS[self.status]


def comparable(profile: str, paper_settings: bool) -> bool:
    """Only a paper-profile run with the paper's settings is judged; a custom profile guarantees nothing."""
    return paper_settings and profile == "paper"


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

    def markdown(self, digits: int = 2) -> str:
        """"mean±std marker", the way every reproduced cell is printed."""
        return f"{fmt_summary(self.summary, digits)} {self.verdict.marker}"

    def csv(self) -> list[str]:
        """mean, std and verdict text: three CSV cells."""
        return [fmt_csv_num(self.summary.mean), fmt_csv_num(self.summary.std), self.verdict.text]


def judged_cell(values: Sequence[float], paper: float | None, tolerance: float, *, profile: str,
                paper_settings: bool) -> JudgedCell:
    """Summarise ``values`` over seeds and judge the mean against the paper's number."""
    summary = summarize(values)
    ok = comparable(profile, paper_settings)
    return JudgedCell(summary, paper, judge(summary.mean, paper, tolerance, comparable=ok, profile=profile))


def verdict_legend(tolerance: float) -> str:
    """One line explaining the markers."""
    tol, m = f"±{tolerance:.1f}", VERDICT_MARKERS
    return (f"{m['pass']} within {tol} of paper · {m['fail']} outside {tol} · "
            f"{m['not_comparable']} not comparable (not the paper profile) · {m['no_paper']} no paper number")


def verdict_rule(what: str, tolerance: float, difference: str = "our mean − paper mean",
                 judged: str = "paper-profile runs with the paper's settings") -> str:
    """The "Verdict:" sentence: when a reproduced ``what`` passes, and which runs are judged at all."""
    return (f"a reproduced {what} passes when |{difference}| ≤ {tolerance:.1f} percentage point, and is judged only "
            f"for {judged}.")


def one_tolerance(tolerances: Mapping[str, float], table: str) -> float:
    """The single tolerance a table's text states; loud if its columns stop agreeing."""
    values = set(tolerances.values())
    if len(values) != 1:
        raise ValueError(f"{table} expects one tolerance for all columns, got {sorted(values)}")
    return values.pop()


# ---------------------------------------------------------------- the page


def no_runs_line(path: Path) -> str:
    """The line a table prints instead of our rows when the stage outputs are absent."""
    return f"**No reproduced runs found under `{path}`; run `dvc repro`.** Only the paper's rows are shown."


def misses(cells: Iterable[tuple[str, JudgedCell]]) -> list[str]:
    """The "Cells outside the tolerance" list for (name, cell) pairs; empty when every cell passes."""
    lines = [f"- {name}: {cell.verdict.text}" for name, cell in cells if cell.verdict.status == "fail"]
    return ["Cells outside the tolerance:", "", *lines, ""] if lines else []


def page(title: str, intro: str, *, notes: Sequence[str], empty: str, unjudged: Sequence[tuple[str, str]],
         verdict: str, tolerance: float, table: str, warnings: Sequence[str] = (), tail: Sequence[str] = ()) -> str:
    """The layout every table shares: title, the paper's setting, our runs' notes (or ``empty``), warnings,
    the verdict rule, the table and ``tail``. ``unjudged`` holds (label, profile) of rows not paper-scale."""
    out = [f"# {title}", "", intro, "", *(["Reproduced:", "", *notes] if notes else [empty]), "", *warnings]
    if unjudged:
        out += [f"**The reproduced numbers for {', '.join(label for label, _ in unjudged)} come from the "
                f"{', '.join(sorted({profile for _, profile in unjudged}))} profile: they are not paper-scale numbers "
                "and are not compared with the paper.**", ""]
    out += [f"Verdict: {verdict}", "", "Legend: " + verdict_legend(tolerance), "", table, *tail]
    return "\n".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------- reading and writing


class Table(Protocol):
    """A built table: its file stem and both renderings."""

    stem: str

    def markdown(self) -> str: ...

    def csv(self) -> str: ...


def write_table(table: Table, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.csv`` atomically into out_dir; returns both paths."""
    md, csv_path = Path(out_dir) / f"{table.stem}.md", Path(out_dir) / f"{table.stem}.csv"
    atomic_write_text(md, table.markdown())
    atomic_write_text(csv_path, table.csv())
    return md, csv_path


def seed_dirs(parent: Path) -> list[tuple[int, Path]]:
    """(seed, folder) for each ``seed_<int>`` folder under parent, by seed; other names are not runs."""
    parent = Path(parent)
    children = parent.iterdir() if parent.is_dir() else ()
    return sorted((int(c.name[5:]), c) for c in children
                  if c.is_dir() and c.name.startswith("seed_") and c.name[5:].isdigit())


def subdirs(parent: Path) -> list[Path]:
    """The folders under parent, by name (none when parent is absent)."""
    return sorted(p for p in Path(parent).iterdir() if p.is_dir()) if Path(parent).is_dir() else []


def finished(metrics: Path) -> bool:
    """Whether a run folder holds its metrics; an unfinished run is left out with a warning, not an error."""
    if not metrics.is_file():
        log.warning("%s: no %s (run not finished?); left out of the report", metrics.parent, metrics.name)
    return metrics.is_file()


def collect_runs(root: Path, kind: type[R]) -> list[R]:
    """Every ``<method>/seed_<s>/metrics.json`` under root as ``kind``, in (method, seed) order.

    A record whose method or seed disagrees with its folder is a ReportError: it would be averaged
    into the wrong row.
    """
    runs = []
    for method_dir in subdirs(root):
        for seed, seed_dir in seed_dirs(method_dir):
            path = seed_dir / "metrics.json"
            if not finished(path):
                continue
            run = kind.read(path)
            if run.method != method_dir.name:
                raise ReportError(f"{path}: key 'method' is {run.method!r} but the file lies under {method_dir.name!r}")
            if run.seed != seed:
                raise ReportError(f"{path}: key 'seed' is {run.seed} but the file lies under seed_{seed}")
            runs.append(run)
    return runs


def group_by_setting(runs: Sequence[DartsRun]) -> list[list[Any]]:
    """Runs grouped into rows: one per (method, profile, paper_settings), in DISPLAY_LABELS order, by seed.

    Seeds of one method run under different profiles must not be averaged together.
    """
    order = {method: i for i, method in enumerate(DISPLAY_LABELS)}
    groups: dict[tuple[str, str, bool], list[DartsRun]] = {}
    for run in runs:
        groups.setdefault((run.method, run.profile, run.paper_settings), []).append(run)
    keys = sorted(groups, key=lambda k: (order[k[0]], k[1], k[2]))
    return [sorted(groups[k], key=lambda run: run.seed) for k in keys]


def search_cost_days(runs: Sequence[DartsRun], where: str) -> tuple[float | None, str | None]:
    """Mean search cost in days and its unit; (None, None) when any run did not record its search.

    A mean over the runs that happen to have a cost would pass off a subset as the whole row.
    """
    if any(run.search_hours is None for run in runs):
        return None, None
    units = sorted({run.search_cost_unit or "" for run in runs})
    if len(units) != 1:
        raise ReportError(f"{where}: key 'search_cost_unit' differs across runs ({', '.join(units)})")
    return statistics.fmean(run.search_hours or 0.0 for run in runs) / 24.0, days_unit(units[0])


@dataclass(frozen=True)
class DartsRow:
    """A reproduced DARTS-space row: the seeds of one method under one profile, and their search cost."""

    label: str
    runs: tuple[Any, ...]  # DartsRun records, by seed
    cost_days: float | None
    cost_unit: str | None

    method = property(lambda self: self.runs[0].method)
    profile = property(lambda self: self.runs[0].profile)
    paper_settings = property(lambda self: self.runs[0].paper_settings)
    seeds = property(lambda self: tuple(run.seed for run in self.runs))

    @property
    def judged(self) -> bool:
        """Whether the row's errors are compared with the paper's at all."""
        return comparable(self.profile, self.paper_settings)

    def darts_note(self, body: str) -> str:
        """The row's note: its setting, runs, ``body`` (what was trained on what), search cost, mismatches."""
        cost = (f"search cost measured in {self.runs[0].search_cost_unit}" if self.cost_days is not None
                else "search cost not recorded for every seed")
        mismatches = unique(m for run in self.runs for m in run.paper_mismatches)
        return (f"- **{self.label}**: {setting_text(self.profile, self.paper_settings)}, {runs_text(self.seeds)}, "
                f"{body}; {cost}.{differs_text(mismatches, self.paper_settings)}")

    def md_row(self, profile: str, *cells: str) -> list[str]:
        """The row's markdown cells: who, ``profile``, how many runs, ``cells``, search cost, method family."""
        return ["ours", self.label, profile, str(len(self.runs)), *cells, fmt_cost(self.cost_days, self.cost_unit),
                "gradient"]
