"""Where each search's cell goes, epoch by epoch (the collapse study), as DVC plot data and one figure.

Every search history records, per epoch, the cell the search would return if it stopped there (its argmax
cell) and, on NB201, that cell's 200-epoch benchmark accuracies. From the committed histories this module
writes:

- ``reports/plots/*.csv``: long tables, one row per (run, epoch), that `dvc plots show` draws with the
  templates in ``.dvc/plots/`` (a line per run, coloured by run; `dvc plots diff` dashes the other revision):
  the NB201 and DARTS-space searches, the NB201 op weights per edge (softmax(α) for DARTS-family methods,
  the IIM importance 1/IIM normalised per edge for IS-DARTS and I-DARTS), and the CIFAR-10 retrains.
- ``nb201_collapse.png``: the argmax cell's CIFAR-10 test accuracy against weight steps (= α steps for the
  DARTS family) for every method and seed, with the all-skip collapse level and the benchmark optimum, and
  the share of parameter-free edges below it.

Histories written before the trajectory was recorded have no `cell`: their rows leave those fields empty.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from isdarts.benchmark.nb201 import ACCURACY_KEYS
from isdarts.io import atomic_write_text
from isdarts.records import RetrainHistory, SearchHistory, subdirs
from isdarts.report import figures
from isdarts.report.runs import seed_histories

# The NB201 reference levels (CIFAR-10 test, %): the all-skip cell DARTS collapses to (the paper's Table 1,
# DARTS 1st order) and the best cell of the benchmark.
NB201_COLLAPSE_C10_TEST = 54.30
NB201_OPTIMUM_C10_TEST = 94.37
NB201_EDGES = 6

ACCURACY_COLUMNS = ACCURACY_KEYS
SEARCH_COLUMNS = ("run", "method", "seed", "epoch", "weight_steps", "alpha_steps", "lr", "train_loss", "train_acc",
                  "test_loss", "test_acc", "images_per_s", "alive_ops", "param_free", "skip")
RETRAIN_COLUMNS = ("run", "epoch", "lr", "drop_path", "train_loss", "train_acc", "test_loss", "test_acc",
                   "images_per_s")
OP_WEIGHT_COLUMNS = ("run", "method", "seed", "epoch", "edge", "op", "weight", "source")


def search_histories(space_dir: Path) -> Iterator[SearchHistory]:
    """Every finished search history under ``<space_dir>/<method>/seed_<s>/``, by method then seed."""
    for method_dir in subdirs(space_dir):
        for _, path in seed_histories(method_dir):
            yield SearchHistory.read(path)


def _run_columns(history: SearchHistory) -> dict[str, Any]:
    """The columns that say which search a row of a plot table comes from."""
    return {"run": figures.run_name(history.method, history.seed), "method": history.method, "seed": history.seed}


def _alive_ops(alive: Any) -> int | None:
    if alive is None:
        return None
    tables = alive.values() if isinstance(alive, Mapping) else [alive]
    return int(sum(sum(map(bool, row)) for table in tables for row in table))


def search_rows(history: SearchHistory) -> list[dict[str, Any]]:
    """One row per epoch: training numbers, alive ops, and the argmax cell (its benchmark accuracies on NB201)."""
    rows = []
    for r in history.epochs:
        cell = r.cell
        row = {
            **_run_columns(history), "epoch": r.epoch, "weight_steps": r.weight_steps, "alpha_steps": r.alpha_steps,
            "lr": r.lr, "train_loss": r.train_loss, "train_acc": r.train_acc, "test_loss": r.test_loss,
            "test_acc": r.test_acc, "images_per_s": r.images_per_s, "alive_ops": _alive_ops(r.alive),
            "param_free": None if cell is None else cell.param_free, "skip": None if cell is None else cell.skip,
        }
        if history.space == "nb201":
            bench = None if cell is None else cell.benchmark
            row.update({key: None if bench is None else getattr(bench, key) for key in ACCURACY_COLUMNS})
        rows.append(row)
    return rows


def op_weight_rows(history: SearchHistory) -> list[dict[str, Any]]:
    """NB201: per epoch, edge and op, what the method weighs the op by: softmax(α) for the DARTS family (the
    recorded mixing weights, alive ops only), or the IIM importance for the IS-DARTS family on the epochs it
    measured (over the ops alive when measured, before that epoch's shrink step)."""
    rows = []
    for r in history.epochs:
        if isinstance(r.op_weights, tuple) or isinstance(r.alpha, tuple):
            weights = r.op_weights if isinstance(r.op_weights, tuple) else [figures.softmax(row) for row in r.alpha]
            shown, source = r.alive, "softmax(alpha)"
        elif isinstance(r.iim, tuple):
            weights, source = [figures.importance(row) for row in r.iim], "IIM importance"
            shown = [[value is not None for value in row] for row in r.iim]  # null: pruned before measuring
        else:
            continue
        for e, edge in enumerate(history.edges):
            for o, op in enumerate(history.ops):
                if shown is None or shown[e][o]:
                    rows.append({**_run_columns(history), "epoch": r.epoch, "edge": edge, "op": op,
                                 "weight": weights[e][o], "source": source})
    return rows


def retrain_rows(retrain_dir: Path) -> list[dict[str, Any]]:
    """One row per epoch of every finished CIFAR-10 retrain under ``<retrain_dir>/<method>/seed_<s>/``."""
    rows = []
    for method_dir in subdirs(retrain_dir):
        for seed, path in seed_histories(method_dir):
            run = figures.run_name(method_dir.name, seed)
            rows += [{"run": run, **{k: getattr(r, k) for k in RETRAIN_COLUMNS[1:]}}
                     for r in RetrainHistory.read(path).epochs]
    return rows


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV text with a header (None as an empty field); only the header when there are no rows."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_plot_data(runs_dir: Path, plots_dir: Path) -> tuple[Path, ...]:
    """The CSV files dvc.yaml's `plots:` name, built from the committed histories; returns the paths."""
    runs_dir, plots_dir = Path(runs_dir), Path(plots_dir)
    nb201 = list(search_histories(runs_dir / "nb201"))
    darts = list(search_histories(runs_dir / "darts" / "search"))
    files = {
        "nb201_search.csv": to_csv([row for h in nb201 for row in search_rows(h)],
                                   SEARCH_COLUMNS + ACCURACY_COLUMNS),
        "nb201_op_weights.csv": to_csv([row for h in nb201 for row in op_weight_rows(h)], OP_WEIGHT_COLUMNS),
        "darts_search.csv": to_csv([row for h in darts for row in search_rows(h)], SEARCH_COLUMNS),
        "darts_retrain.csv": to_csv(retrain_rows(runs_dir / "darts" / "retrain"), RETRAIN_COLUMNS),
    }
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        atomic_write_text(plots_dir / name, text)
    return tuple(plots_dir / name for name in files)


def plot_collapse(runs_dir: Path, out_path: Path) -> Path | None:
    """nb201_collapse.png from the NB201 histories that record the argmax cell; None (skipped) without any."""
    histories = [h for h in search_histories(Path(runs_dir) / "nb201")
                 if any(r.cell is not None and r.weight_steps is not None for r in h.epochs)]
    if not histories:
        figures.skip_figure(out_path, "no NB201 history records the argmax cell")
        return None
    fig = figures.new_figure(9.0, 7.0, "NB201: the cell each search would return if it stopped there "
                             "(200-epoch benchmark accuracy)")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    methods = list(dict.fromkeys(h.method for h in histories))
    for h in histories:
        points = [(r.weight_steps, r.cell) for r in h.epochs if r.cell is not None and r.weight_steps is not None]
        steps = [s for s, _ in points]
        style = {"color": f"C{methods.index(h.method) % 10}", "linestyle": figures.LINESTYLES[h.seed % 4],
                 "marker": "o", "markersize": 3, "linewidth": 1.2, "label": figures.run_name(h.method, h.seed)}
        top.plot(steps, [c.benchmark.cifar10_test if c.benchmark else None for _, c in points], **style)
        bottom.plot(steps, [c.param_free / NB201_EDGES for _, c in points], **style)
    for level, label in ((NB201_OPTIMUM_C10_TEST, "NB201 optimum"),
                         (NB201_COLLAPSE_C10_TEST, "all-skip collapse (paper: DARTS)")):
        top.axhline(level, color="0.45", linestyle=":", linewidth=1.0)
        top.annotate(f"{label} {level:.2f}", (0.01, level), xycoords=("axes fraction", "data"), fontsize=7,
                     va="bottom", color="0.3")
    figures.style_axes(top, ylabel="argmax cell: NB201 CIFAR-10 test (%)")
    top.set_ylim(min(50.0, top.get_ylim()[0]), 96.0)
    top.legend(fontsize=7, ncol=2, loc="lower right")
    figures.style_axes(bottom, xlabel="weight steps (= α steps for the DARTS family)",
                       ylabel="parameter-free edges (share)")
    bottom.set_ylim(-0.05, 1.05)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.94, bottom=0.08, hspace=0.08)
    return figures.save_figure(fig, Path(out_path))


__all__ = ["NB201_COLLAPSE_C10_TEST", "NB201_OPTIMUM_C10_TEST", "op_weight_rows", "plot_collapse",
           "retrain_rows", "search_histories", "search_rows", "to_csv", "write_plot_data"]
