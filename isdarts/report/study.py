"""The collapse study's page, reports/study.md (and .csv), and its figures, from the NB201 searches of
scripts/run_study.py (runs/study/) and scripts/gpu_study.py (runs/study_gpu/). Each row states a run's setting and
where its argmax cell ended and drifted on the way. The study's supernet and data are smaller than the paper's, so
the page sets the runs beside the paper's collapse level and judges nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from isdarts.records import SearchHistory, SearchMetrics
from isdarts.report import render
from isdarts.report.figures import NB201_COLLAPSE_C10_TEST, NB201_OPTIMUM_C10_TEST, plot_collapse, plot_collapse_grid
from isdarts.report.render import DISPLAY_LABELS, Cell, col, fmt_num
from isdarts.report.trajectory import search_histories
from isdarts.spaces.nb201.genotype import Nb201Genotype

STUDY_FIGURE = "study_nb201_collapse.png"
GPU_FIGURE = "study_gpu_nb201_collapse.png"  # scripts/gpu_study.py's runs, copied to runs/study_gpu/
COLUMNS = (col("method", "Method"), col("seed", "Seed", "r"), col("profile", "Profile"), col("device", "Device"),
           col("data", "Data"), col("epochs", "Epochs", "r"), col("alpha_steps", "α steps", "r"),
           col("weight_steps", "Weight steps", "r"),
           col("final_c10", "Final cell C10 test", "r"), col("final_free", "Final param-free edges", "r"),
           col("peak_free", "Most param-free edges (epoch)", "r"), col("genotype", "Final cell"),
           col("first_all_skip", "First all-skip cell (steps)", "r"),
           col("first_none_cut", "First none-cut cell (steps)", "r"))
# The page's summary: per run, whether and when its argmax cell was DARTS's all-skip cell or a cell whose `none`
# edges cut the input from the output (a constant network, 10.00), and where it ended.
SUMMARY = (col("method", "Method"), col("seed", "Seed", "r"),
           col("first_all_skip", "All-skip cell: first at step", "r"),
           col("first_none_cut", "none-cut cell: first at step", "r"),
           col("final_c10", "Final cell C10 test", "r"), col("final_c100", "C100 test", "r"),
           col("final_in16", "IN16 test", "r"), col("genotype", "Final cell"))


def _count(steps: int) -> Cell:
    """A step count with thousands separators in markdown (19,492), plain in CSV."""
    return Cell(f"{steps:,}", (str(steps),))


@dataclass(frozen=True)
class StudyRun:
    """One study search: its history and metrics, and where its argmax cell went."""

    history: SearchHistory
    metrics: SearchMetrics

    label = property(lambda self: DISPLAY_LABELS[self.history.method])

    def first(self, test: str) -> int | None:
        """The step count (α steps for bi-level methods, else weight steps) at the first epoch whose argmax cell
        passes `test` ("all_skip" or "none_cut"); None if none does."""
        for r in self.history.epochs:
            if r.genotype and getattr(Nb201Genotype.from_arch_str(r.genotype), test)():
                return r.alpha_steps or r.weight_steps
        return None

    def reached(self, test: str) -> Cell:
        step = self.first(test)
        return Cell("no", ("",)) if step is None else _count(step)

    def row(self) -> dict[str, Cell | str]:
        last, edges = self.history.epochs[-1], len(self.history.edges)
        cells = [(r.epoch, r.cell) for r in self.history.epochs if r.cell is not None]
        peak_epoch, peak = max(cells, key=lambda ec: (ec[1].param_free, -ec[0])) if cells else (None, None)
        final_c10 = last.cell.benchmark.cifar10_test if last.cell and last.cell.benchmark else None
        return {
            "method": self.label, "seed": str(self.history.seed), "profile": self.metrics.profile,
            "device": self.metrics.device_name, "data": self.metrics.data_kind, "epochs": str(last.epoch),
            "alpha_steps": _count(last.alpha_steps or 0), "weight_steps": _count(last.weight_steps),
            "final_c10": render.number(final_c10),
            "final_free": f"{last.cell.param_free}/{edges}" if last.cell else render.MISSING,
            "peak_free": f"{peak.param_free}/{edges} ({peak_epoch})" if peak else render.MISSING,
            "genotype": f"`{self.metrics.genotype}`",
            "first_all_skip": self.reached("all_skip"), "first_none_cut": self.reached("none_cut"),
        }

    def summary_row(self) -> dict[str, Cell | str]:
        row, last = self.row(), self.history.epochs[-1]
        bench = last.cell.benchmark if last.cell else None
        return {**{k: row[k] for k in ("method", "seed", "first_all_skip", "first_none_cut", "final_c10",
                                       "genotype")},
                "final_c100": render.number(bench.cifar100_test if bench else None),
                "final_in16": render.number(bench.imagenet16_test if bench else None)}

    def summary(self) -> str:
        row = self.row()
        return (f"- {self.label} seed {self.history.seed}: after {row['alpha_steps'].md} α steps and "
                f"{row['weight_steps'].md} weight steps its cell has {row['final_free']} parameter-free edges (most "
                f"on the way: {row['peak_free']}) and scores {row['final_c10'].md} CIFAR-10 test in the benchmark "
                f"(collapse level {fmt_num(NB201_COLLAPSE_C10_TEST)}, optimum {fmt_num(NB201_OPTIMUM_C10_TEST)}).")


def study_runs(study_dir: Path) -> list[StudyRun]:
    """The finished study searches under ``<study_dir>/nb201/``."""
    folder = Path(study_dir) / "nb201"
    return [StudyRun(history, SearchMetrics.read(folder / history.method / f"seed_{history.seed}" / "metrics.json"))
            for history in search_histories(folder)]


# Per method, over its seeds: how many reached each failure cell, and where they ended.
BY_METHOD = (col("method", "Method"), col("seeds", "Seeds", "r"), col("all_skip", "Reached the all-skip cell", "r"),
             col("none_cut", "Reached a none-cut cell", "r"), col("final_free", "Final param-free edges"),
             col("final_c10", "Final cells' C10 test"))


def _by_method(runs: list[StudyRun]) -> dict[str, list[StudyRun]]:
    groups: dict[str, list[StudyRun]] = {}
    for run in runs:
        groups.setdefault(run.history.method, []).append(run)
    return groups


def _method_row(mine: list[StudyRun]) -> dict[str, Cell | str]:
    finals = [run.history.epochs[-1].cell for run in mine]
    edges = len(mine[0].history.edges)
    return {
        "method": mine[0].label, "seeds": ", ".join(str(run.history.seed) for run in mine),
        "all_skip": f"{sum(run.first('all_skip') is not None for run in mine)}/{len(mine)}",
        "none_cut": f"{sum(run.first('none_cut') is not None for run in mine)}/{len(mine)}",
        "final_free": ", ".join(f"{c.param_free}/{edges}" if c else render.MISSING for c in finals),
        "final_c10": ", ".join(render.number(c.benchmark.cifar10_test if c and c.benchmark else None).md
                               for c in finals),
    }


def _findings(runs: list[StudyRun]) -> list[str]:
    """What the runs show, counted over methods (a sentence) and per method (a table): which methods had a failure
    cell as their argmax cell in some seed, and which ended every seed without a parameter-free edge."""
    groups = _by_method(runs)

    def methods_where(hit: Callable[[StudyRun], bool], over: Callable[[Iterable[bool]], bool] = any) -> str:
        names = [mine[0].label for mine in groups.values() if over(hit(run) for run in mine)]
        return f"{len(names)} ({', '.join(names)})" if names else "none"

    def ends_without_param_free(run: StudyRun) -> bool:
        cell = run.history.epochs[-1].cell
        return cell is not None and cell.param_free == 0

    skip = methods_where(lambda run: run.first("all_skip") is not None)
    cut = methods_where(lambda run: run.first("none_cut") is not None)
    clean = methods_where(ends_without_param_free, over=all)
    sentence = (f"{len(groups)} methods, {len(runs)} runs. Methods whose argmax cell was the all-skip cell at an "
                f"epoch's end in at least one seed: {skip}; a `none`-cut cell: {cut}; that ended every seed on a "
                f"cell without parameter-free edges: {clean}.")
    return [sentence, "", render.table_md(BY_METHOD, [_method_row(mine) for mine in groups.values()])]


def build_study(study_dir: Path, figures_dir: Path, gpu_dir: Path | None = None
                ) -> tuple[render.Report, tuple[Path, ...]]:
    """The study page (always written: without runs it says how to make them) and its figures: the CPU
    study's runs under `study_dir`, and the paper-size GPU runs of scripts/gpu_study.py under `gpu_dir`."""
    runs = study_runs(study_dir)
    gpu_runs = study_runs(gpu_dir) if gpu_dir is not None else []
    drawn = [draw(folder, Path(figures_dir) / name)
             for group, folder, name, draw in ((runs, study_dir, STUDY_FIGURE, plot_collapse_grid),
                                               (gpu_runs, gpu_dir, GPU_FIGURE, plot_collapse)) if group]
    intro = ("Does DARTS drift to parameter-free cells at the paper's number of α steps, and does IS-DARTS? "
             "Each row is one NB201 search of `profiles/study.yaml` (run by `scripts/run_study.py`): the DARTS "
             "family gets the paper's number of α steps (50 epochs × 390 ≈ 19,500) on a supernet and data a CPU "
             "can afford, IS-DARTS as many weight steps with its shrinking at the end. At every epoch the "
             "search's argmax cell (what it would return if it stopped there) is looked up in the NB201 "
             f"benchmark; `figures/{STUDY_FIGURE}` draws it. These are study-profile numbers: they are not "
             "paper-scale and are compared with nothing but the benchmark's reference levels.")
    lines = ["# The collapse study (NAS-Bench-201, study profile)", "", intro, ""]
    if runs:
        lines += ["## Summary", "", *_findings(runs), "", "### Per run", "",
                  "Steps are α steps for the bi-level methods, weight steps for the others; \"no\": never, at any "
                  "epoch's end. A `none`-cut cell has `none` on every path from the cell's input to its output: the "
                  "network is a constant (10.00 in the benchmark).", "",
                  render.table_md(SUMMARY, [run.summary_row() for run in runs]), "",
                  "## Every run", "", *(run.summary() for run in runs), "",
                  render.table_md(COLUMNS, [run.row() for run in runs])]
    else:
        # The folder as the project names it, so the page is the same wherever the report is built.
        lines += ["**No study run is committed under `runs/study/`.** Run `python scripts/run_study.py`, then "
                  "`dvc repro report`."]
    if gpu_runs:
        lines += ["", "## At the paper's supernet size, on a GPU", "",
                  "C=16, N=5, 32x32 images, the paper's optimiser settings and step counts (`scripts/gpu_study.py`; "
                  f"the Data column says whether it had the full CIFAR-10); `figures/{GPU_FIGURE}` draws them.", "",
                  *(run.summary() for run in gpu_runs), "", render.table_md(COLUMNS, [run.row() for run in gpu_runs])]
    everything = (*runs, *gpu_runs)
    page = render.Report("study", everything, "\n".join(lines).rstrip("\n") + "\n",
                         render.table_csv(COLUMNS, [run.row() for run in everything]))
    return page, tuple(path for path in drawn if path is not None)
