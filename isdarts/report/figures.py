"""The paper's figures redrawn from search histories (history.json files DVC tracks, never MLflow).

- IIM over epochs (paper Fig. 4 / A.3): the hooked IIM value of every candidate op against the
  epoch, with the shrink steps marked, for NB201 (one panel per edge) and the DARTS normal cell
  (one panel per intermediate node).
- DARTS α against IS-DARTS importance (Fig. A.4): per NB201 edge, softmax(α) of a DARTS search
  beside the normalised importance IS-DARTS measured at its first IIM epoch.

Histories are read as ``isdarts.records.SearchHistory`` (checked there, shapes included). Drawing
uses matplotlib's object API with the Agg canvas (no pyplot: no global backend or figure registry),
a fixed dpi and no "Software" PNG tag, so a rebuild on one machine is byte-identical. Each
``plot_*`` returns the data it drew, or None when an input history is absent (figure skipped with a
warning, stale copy removed).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator

from isdarts.errors import ReportError
from isdarts.io import atomic_write_bytes
from isdarts.records import Matrix, SearchHistory
from isdarts.report.render import DISPLAY_LABELS

log = logging.getLogger(__name__)

DPI = 100
_PNG_METADATA = {"Software": None}  # matplotlib writes its version there; a rebuild must not differ by it
SHRINK_LINE_LABEL = "_shrink"  # leading underscore: matplotlib keeps it out of the legend


@dataclass(frozen=True)
class Series:
    """One line: the candidate (edge, op) and its finite points (epoch, hooked value)."""

    edge: str
    op: str
    epochs: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class IimPlot:
    """An IIM-over-epochs figure: panel title -> line label -> series, and the epochs a shrink step ran."""

    title: str
    ops: tuple[str, ...]
    panels: Mapping[str, Mapping[str, Series]]
    shrink_epochs: tuple[int, ...]


@dataclass(frozen=True)
class AlphaVsIimPlot:
    """Fig. A.4: per edge, softmax(α) of a DARTS run and IS-DARTS's normalised importance, over ``ops``."""

    ops: tuple[str, ...]
    alpha_label: str
    alpha_epoch: int
    iim_epoch: int
    alpha: Mapping[str, tuple[float, ...]]
    importance: Mapping[str, tuple[float, ...]]


# ---------------------------------------------------------------- data from histories
def run_name(method: str, seed: int) -> str:
    """A run as titles, legends and plot data name it: "IS-DARTS seed 0" (a folder not named for a method: as is)."""
    return f"{DISPLAY_LABELS.get(method, method)} seed {seed}"


def _finite(value: Any) -> float | None:
    """A plottable number, or None for null, inf and nan."""
    return float(value) if value is not None and math.isfinite(value) else None


def _iim_plot(history: SearchHistory, title: str, matrices: Sequence[tuple[int, Matrix]],
              panels: Mapping[str, Sequence[tuple[str, int, int]]]) -> IimPlot:
    """What both IIM figures share: each panel's (line label, edge, op) candidates in ``panels``, drawn as the
    finite points of matrix[edge][op] over the (epoch, matrix) pairs, under ``title``.

    A candidate without any finite value (pruned from the start, or `none` at +inf) is left out.
    """
    drawn = {}
    for name, cells in panels.items():
        series = {}
        for label, e, o in cells:
            points = [(epoch, v) for epoch, m in matrices if (v := _finite(m[e][o])) is not None]
            if points:
                epochs, values = zip(*points, strict=True)
                series[label] = Series(history.edges[e], history.ops[o], epochs, values)
        drawn[name] = MappingProxyType(series)
    shrinks = tuple(r.epoch for r in history.epochs if r.shrink_step is not None)
    return IimPlot(f"{title}: IIM (hooked value, larger = less important)", history.ops, MappingProxyType(drawn),
                   shrinks)


def nb201_iim_data(history: SearchHistory) -> IimPlot:
    """Fig. 4 / A.3 data from an NB201 history: one panel per edge, one series per op."""
    matrices = [(r.epoch, r.iim) for r in history.epochs if r.iim is not None]
    panels = {edge: [(op, e, o) for o, op in enumerate(history.ops)] for e, edge in enumerate(history.edges)}
    return _iim_plot(history, f"NB201 {run_name(history.method, history.seed)}", matrices, panels)


def darts_iim_data(history: SearchHistory, kind: str = "normal") -> IimPlot:
    """DARTS-space IIM data for one cell kind: one panel per intermediate node, one series per (edge, op).

    Edge "i<-j" feeds node i.
    """
    matrices = [(r.epoch, r.iim[kind]) for r in history.epochs if isinstance(r.iim, Mapping)]
    nodes: dict[str, list[tuple[str, int, int]]] = {}
    for e, edge in enumerate(history.edges):
        nodes.setdefault(f"node {edge.split('<-')[0]}", []).extend(
            (f"{edge} {op}", e, o) for o, op in enumerate(history.ops))
    panels = dict(sorted(nodes.items(), key=lambda kv: int(kv[0].split()[1])))
    return _iim_plot(history, f"DARTS space {run_name(history.method, history.seed)}, {kind} cell", matrices, panels)


def softmax(logits: Sequence[float]) -> tuple[float, ...]:
    """softmax over one edge's α (shifted by the max, so large logits do not overflow)."""
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = math.fsum(exps)
    return tuple(x / total for x in exps)


def importance(hooked: Sequence[float | None]) -> tuple[float, ...]:
    """One edge's IIM hooked values as importances that sum to 1.

    The hooked value is inverse to importance (spec §7.5: larger = less important), so
    importance = 1 / value, normalised over the edge. A masked op (null), `none` (+inf) and any
    non-finite or non-positive value count as importance 0; an edge with no positive entry is all 0.
    """
    raw = [1.0 / v if (v := _finite(x)) is not None and v > 0 else 0.0 for x in hooked]
    total = math.fsum(raw)
    return tuple(r / total for r in raw) if total > 0 else tuple(0.0 for _ in raw)


def alpha_vs_iim_data(darts: SearchHistory, isdarts: SearchHistory, darts_where: str = "darts history",
                      isdarts_where: str = "isdarts history") -> AlphaVsIimPlot | None:
    """Fig. A.4 data: DARTS's last-epoch softmax(α) and IS-DARTS's first measured importance, per edge.

    None when IS-DARTS has no epoch with an IIM record yet (nothing to compare).
    """
    for key in ("edges", "ops"):
        if getattr(isdarts, key) != getattr(darts, key):
            raise ReportError(f"{isdarts_where}: key {key!r} {list(getattr(isdarts, key))} differs from "
                              f"{darts_where}'s {list(getattr(darts, key))}")
    if not darts.epochs:
        raise ReportError(f"{darts_where}: key 'epochs' is empty")
    last = darts.epochs[-1]
    if not isinstance(last.alpha, tuple):
        raise ReportError(f"{darts_where}: epochs[-1]: missing key 'alpha'")
    for e, row in enumerate(last.alpha):
        if any(_finite(x) is None for x in row):
            raise ReportError(f"{darts_where}: epochs[-1].alpha[{e}] holds a non-finite or non-number value")
    first = next((r for r in isdarts.epochs if isinstance(r.iim, tuple)), None)
    if first is None:
        return None
    return AlphaVsIimPlot(
        ops=darts.ops, alpha_label=f"{DISPLAY_LABELS[darts.method]} softmax(α)", alpha_epoch=last.epoch,
        iim_epoch=first.epoch,
        alpha=MappingProxyType({edge: softmax(last.alpha[e]) for e, edge in enumerate(darts.edges)}),
        importance=MappingProxyType({edge: importance(first.iim[e]) for e, edge in enumerate(darts.edges)}),
    )


# ---------------------------------------------------------------- drawing
LINESTYLES = ("-", "--", "-.", ":")


def new_figure(width: float, height: float, title: str) -> Figure:
    """A figure (inches) titled ``title``, on its own Agg canvas: no pyplot, so no state shared between figures."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=10)
    return fig


def style_axes(ax: Any, title: str | None = None, xlabel: str | None = None, ylabel: str | None = None) -> None:
    """The type sizes every figure shares: panel title 9 pt, axis labels 8 pt, tick labels 7 pt."""
    if title is not None:
        ax.set_title(title, fontsize=9)
    if xlabel is not None:
        ax.set_xlabel(xlabel, fontsize=8)
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)


def _panels(n: int, panel_height: float, title: str) -> tuple[Figure, Sequence[Any]]:
    """A figure of n panels, 2 or 3 to a row, and its n axes; the grid's places left over are hidden."""
    cols = 3 if n > 4 else 2
    rows = math.ceil(n / cols)
    # Fixed margins (in inches) rather than constrained layout: the solver took most of the drawing time.
    width, height = 5.0 * cols, panel_height * rows + 0.4
    fig = new_figure(width, height, title)
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.15 / width, bottom=0.75 / height, top=1 - 0.55 / height,
                        wspace=0.3, hspace=0.45)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def draw_iim(plot: IimPlot) -> Figure:
    """One panel per entry of plot.panels, a line per series (log scale when all values are positive).

    An op keeps its colour in every panel; within a panel, a node's edges differ by line style.
    """
    title = plot.title + ("; dotted: shrink steps" if plot.shrink_epochs else "")
    fig, axes = _panels(len(plot.panels), 3.8, title)
    for ax, (name, series) in zip(axes, plot.panels.items(), strict=True):
        edges = list(dict.fromkeys(s.edge for s in series.values()))
        for label, s in series.items():
            ax.plot(s.epochs, s.values, marker="o", markersize=2.5, linewidth=1.0, label=label,
                    color=f"C{plot.ops.index(s.op) % 10}", linestyle=LINESTYLES[edges.index(s.edge) % 4])
        for epoch in plot.shrink_epochs:
            ax.axvline(epoch, color="0.55", linestyle=":", linewidth=0.9, label=SHRINK_LINE_LABEL)
        values = [v for s in series.values() for v in s.values]
        if values and min(values) > 0:
            ax.set_yscale("log")
            # Plain "30" rather than mathtext "3×10¹", which is wider than the margin.
            ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
            ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
        style_axes(ax, name, "epoch", "IIM (hooked value)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if series:
            ax.legend(fontsize=5 if len(series) > 8 else 7, ncol=2 if len(series) > 8 else 1)
        else:
            ax.text(0.5, 0.5, "no finite IIM values", ha="center", va="center", transform=ax.transAxes, fontsize=8)
    return fig


def draw_alpha_vs_iim(plot: AlphaVsIimPlot) -> Figure:
    """Grouped bars per edge: softmax(α) beside normalised IS-DARTS importance, one pair per op."""
    fig, axes = _panels(len(plot.alpha), 3.6,
                        "DARTS α (softmax) vs IS-DARTS importance (1 / IIM hooked value, normalised per edge)")
    width = 0.4
    xs = range(len(plot.ops))
    for ax, edge in zip(axes, plot.alpha, strict=True):
        ax.bar([x - width / 2 for x in xs], plot.alpha[edge], width,
               label=f"{plot.alpha_label} (epoch {plot.alpha_epoch})")
        ax.bar([x + width / 2 for x in xs], plot.importance[edge], width,
               label=f"IS-DARTS importance (epoch {plot.iim_epoch})")
        ax.set_xticks(list(xs), plot.ops, rotation=30, ha="right", fontsize=7)
        style_axes(ax, f"edge {edge}")
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=7)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """PNG at DPI without the Software tag, written atomically; returns path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=_PNG_METADATA)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


# ---------------------------------------------------------------- one call per figure
def skip_figure(out_path: Path, why: str) -> None:
    """Say why a figure is not drawn, and remove the copy an earlier build left."""
    log.warning("figure %s skipped: %s", Path(out_path).name, why)
    # A figure left from an earlier build would show runs the current inputs no longer hold.
    Path(out_path).unlink(missing_ok=True)


def _plot(out_path: Path, history_paths: Sequence[Path], data: Callable[..., Any], draw: Callable[[Any], Figure],
          no_data: str) -> Any:
    """Read the histories, make the figure's data from them and draw it into out_path; returns the data drawn.

    None (figure skipped) when a history is absent, or the data is None or an IIM figure without a line.
    """
    histories = []
    for path in history_paths:
        if not Path(path).is_file():
            skip_figure(out_path, f"no history at {path}")
            return None
        histories.append(SearchHistory.read(Path(path)))
    plot = data(*histories)
    if plot is None or (isinstance(plot, IimPlot) and not any(plot.panels.values())):
        skip_figure(out_path, no_data)
        return None
    save_figure(draw(plot), out_path)
    return plot


def plot_nb201_iim(history_path: Path, out_path: Path) -> IimPlot | None:
    """nb201_iim_over_epochs.png from an NB201 IS-DARTS history; None (skipped) without data."""
    return _plot(out_path, [history_path], nb201_iim_data, draw_iim, "the history holds no finite IIM value")


def plot_darts_iim(history_path: Path, out_path: Path, kind: str = "normal") -> IimPlot | None:
    """darts_iim_over_epochs.png from a DARTS-space IS-DARTS search history; None (skipped) without data."""
    return _plot(out_path, [history_path], lambda history: darts_iim_data(history, kind), draw_iim,
                 "the history holds no finite IIM value")


def plot_alpha_vs_iim(darts_history_path: Path, isdarts_history_path: Path, out_path: Path) -> AlphaVsIimPlot | None:
    """nb201_alpha_vs_iim.png (Fig. A.4) from an NB201 DARTS history and an IS-DARTS one; None when skipped."""
    return _plot(out_path, [darts_history_path, isdarts_history_path],
                 lambda darts, isdarts: alpha_vs_iim_data(darts, isdarts, str(darts_history_path),
                                                          str(isdarts_history_path)),
                 draw_alpha_vs_iim, f"{isdarts_history_path} has no epoch with an IIM record")
