"""Reproduced runs folded into rows: which seed folders hold a history, and the DARTS-space row Tables 2 and 3
share (the seeds run under one profile, with their search cost).

Runs are found and read by ``isdarts.records`` (``DartsRun.collect``: typed, checked, and matched
to the ``<method>/seed_<s>/`` folder they lie in); this module only folds the seeds of one setting
into a row.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isdarts.errors import ReportError
from isdarts.records import DartsRun, seed_dirs
from isdarts.report import render


def seed_histories(method_dir: Path) -> list[tuple[int, Path]]:
    """(seed, history.json) of each seed folder under method_dir that has one, by seed; the others are unfinished."""
    return [(seed, d / "history.json") for seed, d in seed_dirs(method_dir) if (d / "history.json").is_file()]


def group_by_setting(runs: Sequence[DartsRun]) -> list[list[Any]]:
    """Runs grouped into rows: one per (method, profile, paper_settings), in DISPLAY_LABELS order, by seed.

    Seeds of one method run under different profiles must not be averaged together.
    """
    order = {method: i for i, method in enumerate(render.DISPLAY_LABELS)}
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
    return statistics.fmean(run.search_hours or 0.0 for run in runs) / 24.0, render.days_unit(units[0])


def paper_row(architecture: str, cost_gpu_days: float | None, unit: str, method: str,
              **cells: render.Cell) -> render.Row:
    """A paper row of Table 2 or 3: its architecture, search cost and method family beside ``cells``."""
    return {"source": "paper", "architecture": architecture, "profile": "paper",
            "cost": render.cost(cost_gpu_days, unit, "paper"), "method": method, **cells}


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
        return render.comparable(self.profile, self.paper_settings)

    def judged_cells(self) -> dict[str, render.JudgedCell]:
        """The row's judged cells by the name the "outside the tolerance" list gives them."""
        raise NotImplementedError

    def note(self) -> list[str]:
        """The row's note and a line per seed."""
        raise NotImplementedError

    def misses(self) -> list[tuple[str, render.JudgedCell]]:
        return [(f"{self.label} ({self.profile}), {name}", c) for name, c in self.judged_cells().items()]

    def distinct(self, text: Callable[[Any], str]) -> str:
        """``text(run)`` of the row's runs, each distinct text once, in seed order."""
        return ", ".join(dict.fromkeys(text(run) for run in self.runs))

    def darts_note(self, trained: str, on: str) -> str:
        """The row's note: its setting and runs, "<trained> <epochs> epochs on <on>", its search cost and how it
        differs from the paper."""
        cost = (f"search cost measured in {self.runs[0].search_cost_unit}" if self.cost_days is not None
                else "search cost not recorded for every seed")
        differs = render.differs_text(list(dict.fromkeys(m for run in self.runs for m in run.paper_mismatches)),
                                      self.paper_settings)
        head = render.note_head(self.label, self.profile, self.paper_settings, self.seeds)
        return f"{head}, {trained} {self.distinct(lambda r: str(r.epochs))} epochs on {on}; {cost}.{differs}"

    def row(self) -> render.Row:
        """The cells every DARTS-space row has: who, profile, runs, search cost, method family."""
        return {"source": "ours", "architecture": self.label, "profile": self.profile, "n_runs": str(len(self.runs)),
                "seeds": " ".join(map(str, self.seeds)), "cost": render.cost(self.cost_days, self.cost_unit),
                "method": "gradient"}


def darts_report(stem: str, columns: Sequence[render.Column], paper_rows: Iterable[render.Row],
                 ours: Sequence[DartsRow], runs_dir: Path, title: str, intro: str, **page: Any) -> render.Report:
    """A DARTS-space table: the paper's rows, then ours with their notes; without ours, a "run `dvc repro`" line."""
    return render.report(stem, columns, [*paper_rows, *(row.row() for row in ours)], ours, title, intro,
                         notes=[line for row in ours for line in row.note()],
                         empty=render.no_runs_line(Path(runs_dir)), what="error", **page)
