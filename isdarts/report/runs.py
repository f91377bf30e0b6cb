"""Reproduced runs folded into rows: the base every reproduced row builds on, and the DARTS-space row Tables 2
and 3 share. Runs are found, typed and checked by ``isdarts.records``; this module only folds the seeds of one
setting into a row.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

from isdarts.errors import ReportError
from isdarts.records import DartsRun, seed_dirs
from isdarts.report import render


def seed_histories(method_dir: Path) -> list[tuple[int, Path]]:
    """(seed, history.json) of each seed folder under method_dir that has one, by seed; the others are unfinished."""
    return [(seed, d / "history.json") for seed, d in seed_dirs(method_dir) if (d / "history.json").is_file()]


def group_by_setting(runs: Sequence[DartsRun]) -> list[list[Any]]:
    """Runs grouped into rows by seed, one per (method, profile, paper_settings), in DISPLAY_LABELS order: seeds of
    one method run under different profiles must not be averaged together."""
    def setting(run: DartsRun) -> tuple[int, str, bool]:
        return list(render.DISPLAY_LABELS).index(run.method), run.profile, run.paper_settings

    return [list(group) for _, group in groupby(sorted(runs, key=lambda run: (*setting(run), run.seed)), setting)]


def search_cost_days(runs: Sequence[DartsRun], where: str) -> tuple[float | None, str | None]:
    """Mean search cost in days and its unit; (None, None) when any run did not record its search: a mean over the
    runs that happen to have a cost would pass off a subset as the whole row."""
    if any(run.search_hours is None for run in runs):
        return None, None
    units = sorted({run.search_cost_unit or "" for run in runs})
    if len(units) != 1:
        raise ReportError(f"{where}: key 'search_cost_unit' differs across runs ({', '.join(units)})")
    return statistics.fmean(run.search_hours or 0.0 for run in runs) / 24.0, render.days_unit(units[0])


class Reproduced:
    """A reproduced row: a label over the runs of one setting (``setting``: the record naming its method, profile
    and paper_settings), whether the paper judges it and its judged cells, as ``render.report`` reads them."""

    label: str
    runs: tuple[Any, ...]  # by seed

    setting = property(lambda self: self.runs[0])
    method = property(lambda self: self.setting.method)
    profile = property(lambda self: self.setting.profile)
    paper_settings = property(lambda self: self.setting.paper_settings)
    seeds = property(lambda self: tuple(run.seed for run in self.runs))
    # Only a paper-profile run with the paper's settings is judged; a custom profile guarantees nothing.
    judged = property(lambda self: self.paper_settings and self.profile == "paper")

    def judged_cells(self) -> dict[str, render.JudgedCell]:
        """The row's judged cells by the name the "outside the tolerance" list gives them."""
        raise NotImplementedError

    def misses(self) -> list[tuple[str, render.JudgedCell]]:
        return [(f"{self.label}, {name}", c) for name, c in self.judged_cells().items()]

    def judge(self, values: Sequence[float], paper: float | None, tolerance: float) -> render.JudgedCell:
        """``values`` summarised over the row's seeds, their mean judged against ``paper`` if the row is judged."""
        summary = render.summarize(values)
        verdict = render.judge(summary.mean, paper, tolerance, comparable=self.judged, profile=self.profile)
        return render.JudgedCell(summary, paper, verdict)

    def setting_text(self) -> str:
        return f"profile `{self.profile}` ({'paper settings' if self.paper_settings else 'not the paper settings'})"

    def note_head(self) -> str:
        """How the row's note begins: "- **label**: profile `quick` (…), 2 runs (seeds 0, 1)"."""
        s = "" if len(self.seeds) == 1 else "s"
        runs = f"{len(self.seeds)} run{s} (seed{s} {', '.join(map(str, self.seeds))})"
        return f"- **{self.label}**: {self.setting_text()}, {runs}"

    def devices(self) -> str:
        """" on <device>, <device>" for the runs that recorded a device name; empty when none did."""
        devices = sorted({run.device_name for run in self.runs if run.device_name})
        return f" on {', '.join(devices)}" if devices else ""

    def differs(self, say_matches: bool = True) -> str:
        """The sentence a note ends with: how the runs differ from the paper, or (``say_matches``) that they don't."""
        mismatches = list(dict.fromkeys(m for run in self.runs for m in run.paper_mismatches))
        if mismatches:
            return f" Differs from the paper in: {'; '.join(mismatches)}."
        return " Matches the paper's settings." if say_matches and self.paper_settings else ""

    def distinct(self, text: Callable[[Any], str]) -> str:
        """``text(run)`` of the row's runs, each distinct text once, in seed order."""
        return ", ".join(dict.fromkeys(text(run) for run in self.runs))


@dataclass(frozen=True)
class DartsRow(Reproduced):
    """A reproduced DARTS-space row: the seeds of one method under one profile, and their search cost."""

    label: str
    runs: tuple[Any, ...]  # DartsRun records, by seed
    cost_days: float | None
    cost_unit: str | None

    def misses(self) -> list[tuple[str, render.JudgedCell]]:
        # Two rows of one method differ only in their profile.
        return [(f"{self.label} ({self.profile}), {name}", c) for name, c in self.judged_cells().items()]

    def note(self) -> list[str]:
        """The row's note and a line per seed."""
        raise NotImplementedError

    def darts_note(self, trained: str, on: str) -> str:
        """The row's note: its setting and runs, "<trained> <epochs> epochs on <on>", search cost, paper mismatches."""
        cost = (f"search cost measured in {self.runs[0].search_cost_unit}" if self.cost_days is not None
                else "search cost not recorded for every seed")
        epochs = self.distinct(lambda r: str(r.epochs))
        return f"{self.note_head()}, {trained} {epochs} epochs on {on}; {cost}.{self.differs()}"

    def row(self) -> render.Row:
        """The cells every DARTS-space row has: who, profile, runs, search cost, method family."""
        return {"source": "ours", "architecture": self.label, "profile": self.profile, "n_runs": str(len(self.runs)),
                "seeds": " ".join(map(str, self.seeds)), "cost": render.cost(self.cost_days, self.cost_unit),
                "method": "gradient"}


def paper_row(paper: Any, cost_unit: str, **cells: render.Cell) -> render.Row:
    """A paper row of Table 2 or 3: its architecture, search cost and method family beside ``cells``."""
    return {"source": "paper", "architecture": paper.architecture, "profile": "paper",
            "cost": render.cost(paper.cost_gpu_days, cost_unit, "paper"), "method": paper.method, **cells}


def darts_report(stem: str, columns: Sequence[render.Column], paper_rows: Iterable[render.Row],
                 ours: Sequence[DartsRow], runs_dir: Path, title: str, intro: str, **page: Any) -> render.Report:
    """A DARTS-space table: the paper's rows, then ours with their notes; without ours, a "run `dvc repro`" line."""
    return render.report(stem, columns, [*paper_rows, *(row.row() for row in ours)], ours, title, intro,
                         notes=[line for row in ours for line in row.note()],
                         empty=render.no_runs_line(Path(runs_dir)), what="error", **page)
