"""Where each search's cell goes, epoch by epoch (the collapse study): the DVC plot tables ``reports/plots/*.csv``,
one row per (run, epoch), that `dvc plots show` draws with the templates in ``.dvc/plots/``. Rows of histories
written before the argmax cell was recorded leave its fields empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from isdarts.benchmark.nb201 import ACCURACY_KEYS
from isdarts.io import atomic_write_text
from isdarts.records import RetrainHistory, SearchHistory, subdirs
from isdarts.report import render
from isdarts.report.runs import seed_histories

EPOCH_COLUMNS = ("epoch", "weight_steps", "alpha_steps", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                 "images_per_s")  # copied from each SearchEpoch as recorded
SEARCH_COLUMNS = ("run", "method", "seed", *EPOCH_COLUMNS, "alive_ops", "param_free", "skip")
RETRAIN_COLUMNS = ("run", "epoch", "lr", "drop_path", "train_loss", "train_acc", "test_loss", "test_acc",
                   "images_per_s")
OP_WEIGHT_COLUMNS = ("run", "method", "seed", "epoch", "edge", "op", "weight", "source")


def run_name(method: str, seed: int) -> str:
    """A run as titles, legends and plot data name it: "IS-DARTS seed 0" (a folder not named for a method: as is)."""
    return f"{render.DISPLAY_LABELS.get(method, method)} seed {seed}"


def softmax(logits: Sequence[float]) -> tuple[float, ...]:
    """softmax over one edge's α (shifted by the max, so large logits do not overflow)."""
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = math.fsum(exps)
    return tuple(x / total for x in exps)


def importance(hooked: Sequence[float | None]) -> tuple[float, ...]:
    """One edge's IIM hooked values as importances that sum to 1: 1 / value, normalised over the edge, since a
    larger hooked value means less important (spec §7.5). A masked op (null), `none` (+inf) and any non-finite
    or non-positive value count as importance 0; an edge with no positive entry is all 0."""
    raw = [1.0 / x if x is not None and math.isfinite(x) and x > 0 else 0.0 for x in hooked]
    total = math.fsum(raw)
    return tuple(r / total for r in raw) if total > 0 else (0.0,) * len(raw)


def search_histories(space_dir: Path) -> list[SearchHistory]:
    """Every finished search history under ``<space_dir>/<method>/seed_<s>/``, by method then seed."""
    return [SearchHistory.read(path) for method_dir in subdirs(space_dir) for _, path in seed_histories(method_dir)]


def _run_columns(history: SearchHistory) -> dict[str, Any]:
    """The columns that say which search a row of a plot table comes from."""
    return {"run": run_name(history.method, history.seed), "method": history.method, "seed": history.seed}


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
        row = {**_run_columns(history), **{k: getattr(r, k) for k in EPOCH_COLUMNS}, "alive_ops": _alive_ops(r.alive),
               "param_free": None if cell is None else cell.param_free, "skip": None if cell is None else cell.skip}
        if history.space == "nb201":
            bench = None if cell is None else cell.benchmark
            row.update({key: None if bench is None else getattr(bench, key) for key in ACCURACY_KEYS})
        rows.append(row)
    return rows


def op_weight_rows(history: SearchHistory) -> list[dict[str, Any]]:
    """NB201: per epoch, edge and op, what the method weighs the op by: softmax(α) for the DARTS family (the
    recorded mixing weights, alive ops only), or the IIM importance for the IS-DARTS family on the epochs it
    measured (over the ops alive when measured, before that epoch's shrink step)."""
    rows = []
    for r in history.epochs:
        if isinstance(r.op_weights, tuple) or isinstance(r.alpha, tuple):
            weights = r.op_weights if isinstance(r.op_weights, tuple) else [softmax(row) for row in r.alpha]
            shown, source = r.alive, "softmax(alpha)"
        elif isinstance(r.iim, tuple):
            weights, source = [importance(row) for row in r.iim], "IIM importance"
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
            run = run_name(method_dir.name, seed)
            rows += [{"run": run, **{k: getattr(r, k) for k in RETRAIN_COLUMNS[1:]}}
                     for r in RetrainHistory.read(path).epochs]
    return rows


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as the reports' CSV (render.table_csv), a value as Python prints it and None as an empty field."""
    return render.table_csv([render.col(key) for key in columns],
                            [{k: "" if v is None else str(v) for k, v in row.items()} for row in rows])


def write_plot_data(runs_dir: Path, plots_dir: Path) -> tuple[Path, ...]:
    """The CSV files dvc.yaml's `plots:` name, built from the committed histories; returns the paths."""
    runs_dir, plots_dir = Path(runs_dir), Path(plots_dir)
    nb201 = search_histories(runs_dir / "nb201")
    darts = search_histories(runs_dir / "darts" / "search")
    files = {
        "nb201_search.csv": to_csv([row for h in nb201 for row in search_rows(h)], SEARCH_COLUMNS + ACCURACY_KEYS),
        "nb201_op_weights.csv": to_csv([row for h in nb201 for row in op_weight_rows(h)], OP_WEIGHT_COLUMNS),
        "darts_search.csv": to_csv([row for h in darts for row in search_rows(h)], SEARCH_COLUMNS),
        "darts_retrain.csv": to_csv(retrain_rows(runs_dir / "darts" / "retrain"), RETRAIN_COLUMNS),
    }
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        atomic_write_text(plots_dir / name, text)
    return tuple(plots_dir / name for name in files)
