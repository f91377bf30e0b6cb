"""Small helpers shared by the paper-table reports: formatting, verdicts, input checks, atomic writes.

Every report must be byte-identical for identical inputs (CI diffs the rebuilt markdown against the
committed one), so formatting is fixed-precision and nothing here reads the clock or the filesystem
layout.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

MISSING = "–"  # the paper's own mark for "no number"


class ReportError(ValueError):
    """A stage output the report cannot use; the message names the file and the offending key."""


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

    A single run has no spread to measure, so its "±0.00" must not pass for the paper's
    "all seeds agree" ±0.00.
    """
    if mean is None:
        return MISSING
    if n == 1:
        return f"{fmt_num(mean, digits)}±{fmt_num(0.0, digits)} (n=1)"
    if std is None:
        return fmt_num(mean, digits)
    return f"{fmt_num(mean, digits)}±{fmt_num(std, digits)}"


def fmt_csv_num(value: float | None) -> str:
    """A number for CSV: rounded to 4 decimals (stable text), empty for None."""
    if value is None:
        return ""
    return repr(round(float(value), 4))


def fmt_csv_sig(value: float | None) -> str:
    """A measured cost for CSV: 6 significant digits (quick runs cost ~0.001 days), empty for None."""
    return "" if value is None else f"{value:.6g}"


def fmt_paper(value: float | None) -> str:
    """A paper number as transcribed (2000, 0.17, 1.5): shortest text, no padding zeros; "–" for None."""
    return MISSING if value is None else f"{value:g}"


def fmt_sig(value: float | None, digits: int = 3) -> str:
    """``digits`` significant digits, for measured costs that range from 0.001 CPU-days to hundreds."""
    return MISSING if value is None else f"{value:.{digits}g}"


def days_unit(hours_unit: str) -> str:
    """The unit a cost in ``hours_unit`` is in after dividing by 24.

    "GPU-hours (NVIDIA H100)" becomes "GPU-days (NVIDIA H100)", "CPU-hours" "CPU-days": the
    measured device stays named, so CPU time is never passed off as GPU time.
    """
    if "hours" in hours_unit:
        return hours_unit.replace("hours", "days", 1)
    return f"days of {hours_unit}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   align: Sequence[str] | None = None) -> str:
    """A GitHub markdown table; ``align`` holds "l", "r" or "c" per column (default: left)."""
    width = len(header)
    for row in rows:
        if len(row) != width:
            raise ValueError(f"row has {len(row)} cells, header has {width}: {row!r}")
    rule = {"l": "---", "r": "---:", "c": ":---:"}
    aligns = align or ["l"] * width
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule[a] for a in aligns) + "|"]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _escape(cell: str) -> str:
    # Pipes inside a cell (NB201 arch strings) would split the column.
    return cell.replace("|", "\\|")


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
    std = statistics.stdev(values) if len(values) > 1 else None
    return Summary(statistics.fmean(values), std, len(values))


@dataclass(frozen=True)
class Verdict:
    """How one reproduced cell compares with the paper.

    status: "pass" | "fail" | "not_comparable" | "no_paper". Only "pass" counts as reproduced.
    """

    status: str
    text: str

    @property
    def marker(self) -> str:
        return VERDICT_MARKERS[self.status]


VERDICT_MARKERS = {"pass": "✓", "fail": "✗", "not_comparable": "~", "no_paper": "∅"}


def comparable(profile: str, paper_settings: bool) -> bool:
    """Only a paper-profile run with the paper's settings is judged against the paper.

    A custom profile may happen to match every setting the check knows of, but nothing
    guarantees it, so its numbers are shown and never counted as reproduced.
    """
    return paper_settings and profile == "paper"


def judge(ours: float, paper: float | None, tolerance: float, *, comparable: bool,
          profile: str = "quick") -> Verdict:
    """Compare our mean with the paper's: within ±tolerance passes, only for paper-setting runs.

    A non-paper profile is never a pass: it is "not comparable", whatever the numbers say.
    """
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


def judged_cell(values: Sequence[float], paper: float | None, tolerance: float, *, profile: str,
                paper_settings: bool) -> JudgedCell:
    """Summarise ``values`` over seeds and judge the mean against the paper's number."""
    summary = summarize(values)
    verdict = judge(summary.mean, paper, tolerance, comparable=comparable(profile, paper_settings),
                    profile=profile)
    return JudgedCell(summary, paper, verdict)


def fmt_judged(cell: JudgedCell, digits: int = 2) -> str:
    """"mean±std marker", the way every reproduced cell is printed in markdown."""
    return f"{fmt_mean_std(cell.summary.mean, cell.summary.std, digits, n=cell.summary.n)} {cell.verdict.marker}"


def verdict_legend(tolerance: float, unit: str = "") -> str:
    """One line explaining the markers."""
    tol = f"±{tolerance:.1f}{unit}"
    return (f"{VERDICT_MARKERS['pass']} within {tol} of paper · {VERDICT_MARKERS['fail']} outside {tol} · "
            f"{VERDICT_MARKERS['not_comparable']} not comparable (not the paper profile) · "
            f"{VERDICT_MARKERS['no_paper']} no paper number")


# ---------------------------------------------------------------- reading stage outputs


def load_json(path: Path) -> dict[str, Any]:
    """A stage output's JSON object; any problem is a ReportError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: results file not found") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read results file ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object at top level, got {type(data).__name__}")
    return data


def require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """data[key], checked for presence and type; ``where`` names the file (and run) in errors."""
    if key not in data:
        raise ReportError(f"{where}: missing key {key!r}")
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass; true/false is never a valid number here.
    if isinstance(value, bool) and bool not in kinds:
        raise ReportError(f"{where}: key {key!r} must be {_names(kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise ReportError(f"{where}: key {key!r} must be {_names(kinds)}, got {type(value).__name__}")
    return value


def require_number(data: Mapping[str, Any], key: str, where: str) -> float:
    """A finite JSON number at data[key]."""
    value = float(require(data, key, (int, float), where))
    if not math.isfinite(value):
        raise ReportError(f"{where}: key {key!r} is not a finite number ({value})")
    return value


def require_optional_number(data: Mapping[str, Any], key: str, where: str) -> float | None:
    """A finite JSON number or null at data[key] (the key itself must be present)."""
    if key in data and data[key] is None:
        return None
    return require_number(data, key, where)


def require_str_list(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    """A JSON list of strings at data[key]."""
    items = require(data, key, list, where)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ReportError(f"{where}: key {key!r}[{i}] must be str, got {type(item).__name__}")
    return tuple(items)


def seed_dirs(parent: Path) -> list[tuple[int, Path]]:
    """(seed, folder) for each ``seed_<int>`` folder under parent, by seed; other names are not runs."""
    found = []
    if Path(parent).is_dir():
        for child in Path(parent).iterdir():
            name = child.name
            if child.is_dir() and name.startswith("seed_") and name[5:].isdigit():
                found.append((int(name[5:]), child))
    return sorted(found)


def unique(items: Sequence[str]) -> list[str]:
    """Items without repeats, first occurrence first (stable text for notes gathered over seeds)."""
    return list(dict.fromkeys(items))


def no_runs_line(path: Path) -> str:
    """The line a table prints instead of our rows when the stage outputs are absent."""
    return f"**No reproduced runs found under `{path}`; run `dvc repro`.** Only the paper's rows are shown."


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kinds)


# ---------------------------------------------------------------- writing


def csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """CSV with "\\n" line ends, so the file is the same on every OS."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


# ---------------------------------------------------------------- DARTS-space run files


# Every method the pipeline runs, in the order reproduced rows are printed.
DISPLAY_LABELS: Mapping[str, str] = MappingProxyType({
    "isdarts": "IS-DARTS",
    "darts1": "DARTS (1st)",
    "darts2": "DARTS (2nd)",
    "lambda_darts": "Λ-DARTS",
    "idarts": "I-DARTS",
    "sdarts": "S-DARTS",
})


@dataclass(frozen=True)
class RunInfo:
    """The fields every DARTS-space retrain/ImageNet metrics file shares: who, which profile, search cost."""

    method: str
    seed: int
    profile: str
    paper_settings: bool
    paper_mismatches: tuple[str, ...]
    genotype: str
    search_hours: float | None
    search_cost_unit: str | None


def read_run_info(data: Mapping[str, Any], where: str, method: str | None = None,
                  seed: int | None = None) -> RunInfo:
    """Check the shared fields; ``method``/``seed`` are what the file's folder says they must be."""
    space = require(data, "space", str, where)
    if space != "darts":
        raise ReportError(f"{where}: key 'space' is {space!r}; the DARTS-space tables need 'darts'")
    found = require(data, "method", str, where)
    if found not in DISPLAY_LABELS:
        raise ReportError(f"{where}: key 'method' has unknown method {found!r}; "
                          f"expected one of {', '.join(DISPLAY_LABELS)}")
    if method is not None and found != method:
        raise ReportError(f"{where}: key 'method' is {found!r} but the file lies under {method!r}")
    run_seed = require(data, "seed", int, where)
    if seed is not None and run_seed != seed:
        raise ReportError(f"{where}: key 'seed' is {run_seed} but the file lies under seed_{seed}")
    hours = require_optional_number(data, "search_hours", where)
    unit = require(data, "search_cost_unit", (str, type(None)), where)
    if hours is not None and unit is None:
        raise ReportError(f"{where}: key 'search_cost_unit' is null but 'search_hours' is {hours}")
    return RunInfo(
        method=found, seed=run_seed, profile=require(data, "profile", str, where),
        paper_settings=require(data, "paper_settings", bool, where),
        paper_mismatches=require_str_list(data, "paper_mismatches", where),
        genotype=require(data, "genotype", str, where), search_hours=hours, search_cost_unit=unit,
    )


def search_cost_days(infos: Sequence[RunInfo], where: str) -> tuple[float | None, str | None]:
    """Mean search cost in days and its unit; (None, None) when any run did not record its search.

    A mean over the runs that happen to have a cost would pass off a subset as the whole row.
    """
    if any(info.search_hours is None for info in infos):
        return None, None
    units = sorted({info.search_cost_unit or "" for info in infos})
    if len(units) != 1:
        raise ReportError(f"{where}: key 'search_cost_unit' differs across runs ({', '.join(units)})")
    hours = statistics.fmean(info.search_hours or 0.0 for info in infos)
    return hours / 24.0, days_unit(units[0])


def setting_text(profile: str, paper_settings: bool) -> str:
    """How a row's profile is introduced in the markdown notes."""
    return f"profile `{profile}` ({'paper settings' if paper_settings else 'not the paper settings'})"


def not_comparable_warning(labels: Sequence[str], profiles: Sequence[str]) -> str:
    """The bold line a table prints when some of its rows are not paper-scale."""
    return (f"**The reproduced numbers for {', '.join(labels)} come from the {', '.join(sorted(set(profiles)))} "
            "profile: they are not paper-scale numbers and are not compared with the paper.**")


def group_by_setting(items: Sequence[Any], info_of: Any) -> list[list[Any]]:
    """Runs grouped into rows: one per (method, profile, paper_settings), in DISPLAY_LABELS order.

    Seeds of one method run under different profiles must not be averaged together, so each
    profile gets its own row. Within a row runs are ordered by seed.
    """
    order = {method: i for i, method in enumerate(DISPLAY_LABELS)}
    groups: dict[tuple[str, str, bool], list[Any]] = {}
    for item in items:
        info = info_of(item)
        groups.setdefault((info.method, info.profile, info.paper_settings), []).append(item)
    keys = sorted(groups, key=lambda k: (order[k[0]], k[1], k[2]))
    return [sorted(groups[k], key=lambda item: info_of(item).seed) for k in keys]
