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
