"""One entry point that rebuilds every report file (tables, figures, study page, DVC plot data) from stage outputs.

Reads only files DVC tracks, ``results/`` and ``runs/``, never the MLflow database. Every table is built before
any is written, so a malformed input raises ReportError and leaves the previous reports as they were.
"""

from __future__ import annotations

import logging
from pathlib import Path

from isdarts.errors import ReportError
from isdarts.report import paper_subset
from isdarts.report.paper import FIGURES
from isdarts.report.render import write_table
from isdarts.report.runs import seed_histories
from isdarts.report.table1 import METHOD_LABELS as TABLE1_METHODS
from isdarts.report.table1 import build_table1
from isdarts.report.table2 import build_table2
from isdarts.report.table3 import build_table3
from isdarts.report.table_a1 import build_table_a1
from isdarts.report.table_a2 import build_table_a2
from isdarts.report.table_robust import build_table_robust
from isdarts.report.trajectory import write_plot_data

log = logging.getLogger(__name__)

FIGURE_NAMES: tuple[str, ...] = ("nb201_iim_over_epochs.png", "darts_iim_over_epochs.png", "nb201_alpha_vs_iim.png",
                                 "nb201_collapse.png")


def build_figures(runs_dir: Path = Path("runs"), figures_dir: Path = Path("reports/figures")) -> tuple[Path, ...]:
    """Draw every figure whose histories exist into figures_dir; returns the PNGs written. The folder is created
    even when no figure can be drawn, so a pipeline that declares it as an output always finds it."""
    # matplotlib costs ~1 s to import; table-only callers never pay it.
    from isdarts.report.figures import plot_alpha_vs_iim, plot_collapse, plot_iim

    runs_dir, figures_dir = Path(runs_dir), Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)

    def history(run: str) -> Path:
        """The lowest finished seed's history.json of a run folder as the paper data names it (``nb201/<method>``);
        without one, a path the plot reports as absent (figure skipped)."""
        method_dir = runs_dir.joinpath(*run.split("/"))
        return next((path for _, path in seed_histories(method_dir)), method_dir / "seed_*" / "history.json")

    # Which searches each of the paper's figures draws is the paper data's `figures`.
    nb201_iim, darts_iim, alpha_iim, collapse = (figures_dir / name for name in FIGURE_NAMES)
    drawn = {nb201_iim: plot_iim(history(FIGURES.nb201_iim_over_epochs), nb201_iim),
             darts_iim: plot_iim(history(FIGURES.darts_iim_over_epochs), darts_iim),
             alpha_iim: plot_alpha_vs_iim(*map(history, FIGURES.nb201_alpha_vs_iim), alpha_iim),
             collapse: plot_collapse(runs_dir, collapse)}
    return tuple(path for path, plot in drawn.items() if plot is not None)


def build_all(results_dir: Path = Path("results"), runs_dir: Path = Path("runs"),
              reports_dir: Path = Path("reports")) -> tuple[Path, ...]:
    """Write every table (.md and .csv), figure, the study page and the DVC plot data into reports_dir; returns
    the files written. Table 1 needs at least one NB201 result file; the other tables print the paper's rows and
    a "run `dvc repro`" line when their runs are absent, and figures whose histories are absent are skipped. The
    searches of profiles/paper_subset.yaml under ``<runs_dir>/paper_subset/`` add rows of their own to Tables 1
    and A.1 and their collapse figure, only when there are any."""
    results_dir, runs_dir, reports_dir = Path(results_dir), Path(runs_dir), Path(reports_dir)
    table1_files = [path for m in TABLE1_METHODS if (path := results_dir / f"nb201_{m}.json").is_file()]
    if not table1_files:
        names = ", ".join(f"nb201_{m}.json" for m in TABLE1_METHODS)
        raise ReportError(f"{results_dir}: no NB201 results ({names}); run `dvc repro` (the lookup stage) first")
    # The paper's search on the CIFAR-10 subset (run outside DVC): rows of their own in Tables 1 and A.1.
    subset = paper_subset.read_rows(runs_dir / paper_subset.FOLDER)
    tables = [build_table1(table1_files, subset_rows=subset), build_table2(runs_dir / "darts" / "retrain"),
              build_table3(runs_dir / "darts" / "imagenet"), build_table_a1(results_dir, subset),
              build_table_a2(runs_dir / "darts" / "sweep"), build_table_robust(runs_dir)]
    written = [path for table in tables for path in write_table(table, reports_dir)]
    written += build_figures(runs_dir, reports_dir / "figures")
    subset_figure = paper_subset.build_figure(subset, runs_dir / paper_subset.FOLDER, reports_dir / "figures")
    written += [subset_figure] if subset_figure is not None else []
    # The study page draws a figure: like build_figures, it imports matplotlib only once the tables are written.
    from isdarts.report.study import build_study

    study, study_figures = build_study(runs_dir / "study", reports_dir / "figures", runs_dir / "study_gpu")
    written += [*write_table(study, reports_dir), *study_figures]
    written += write_plot_data(runs_dir, reports_dir / "plots")
    log.info("wrote %d report files into %s", len(written), reports_dir)
    return tuple(written)
