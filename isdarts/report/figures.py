"""The paper's figures (Fig. 4 / A.3, A.4) and the collapse study's, redrawn from the search histories DVC tracks.

matplotlib's object API on the Agg canvas (no pyplot: no global state), a fixed dpi and no "Software" PNG tag make
a rebuild on one machine byte-identical. A figure whose inputs are absent is skipped with a warning.
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
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter, MaxNLocator

from isdarts.errors import ReportError
from isdarts.io import atomic_write_bytes
from isdarts.records import SearchHistory
from isdarts.report.render import DISPLAY_LABELS
from isdarts.report.trajectory import importance, run_name, search_histories, softmax
from isdarts.spaces.nb201.genotype import Nb201Genotype

log = logging.getLogger(__name__)

SHRINK_LINE_LABEL = "_shrink"  # leading underscore: matplotlib keeps it out of the legend
LINESTYLES = ("-", "--", "-.", ":")
# The NB201 reference levels (CIFAR-10 test, %): the all-skip cell DARTS collapses to (the paper's Table 1,
# DARTS 1st order) and the best cell of the benchmark.
NB201_COLLAPSE_C10_TEST = 54.30
NB201_OPTIMUM_C10_TEST = 94.37


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
def iim_data(history: SearchHistory, kind: str = "normal") -> IimPlot:
    """Fig. 4 / A.3 data: each candidate's finite IIM values over the epochs (a candidate without any, pruned from
    the start or `none` at +inf, is left out). NB201: a panel per edge, a line per op; DARTS space (its ``kind``
    cell): a panel per intermediate node (edge "i<-j" feeds node i), a line per (edge, op)."""
    nb201 = history.space == "nb201"
    matrices = [(r.epoch, r.iim if nb201 else r.iim[kind]) for r in history.epochs if r.iim is not None]
    panels: dict[str, dict[str, Series]] = {}
    for e, edge in enumerate(history.edges):
        panel = panels.setdefault(edge if nb201 else f"node {edge.split('<-')[0]}", {})
        for o, op in enumerate(history.ops):
            points = [(epoch, float(v)) for epoch, m in matrices if (v := m[e][o]) is not None and math.isfinite(v)]
            if points:
                epochs, values = zip(*points, strict=True)
                panel[op if nb201 else f"{edge} {op}"] = Series(edge, op, epochs, values)
    if not nb201:
        panels = dict(sorted(panels.items(), key=lambda kv: int(kv[0].split()[1])))
    name = run_name(history.method, history.seed)
    title = f"NB201 {name}" if nb201 else f"DARTS space {name}, {kind} cell"
    return IimPlot(f"{title}: IIM (hooked value, larger = less important)", history.ops,
                   MappingProxyType({k: MappingProxyType(v) for k, v in panels.items()}),
                   tuple(r.epoch for r in history.epochs if r.shrink_step is not None))


def alpha_vs_iim_data(darts: SearchHistory, isdarts: SearchHistory, darts_where: str = "darts history",
                      isdarts_where: str = "isdarts history") -> AlphaVsIimPlot | None:
    """Fig. A.4 data: DARTS's last-epoch softmax(α) and IS-DARTS's first measured importance, per edge; None when
    IS-DARTS has no epoch with an IIM record yet."""
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
        if not all(x is not None and math.isfinite(x) for x in row):
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
def new_figure(width: float, height: float, title: str, **title_position: Any) -> Figure:
    """A figure (inches) titled ``title`` (placed by ``title_position``: suptitle's y, verticalalignment), on its own
    Agg canvas: no pyplot, so no state shared between figures."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=10, **title_position)
    return fig


def style_axes(ax: Any, title: str | None = None, xlabel: str | None = None, ylabel: str | None = None) -> None:
    """The type sizes every figure shares: panel title 9 pt, axis labels 8 pt, tick labels 7 pt."""
    for text, setter, size in ((title, ax.set_title, 9), (xlabel, ax.set_xlabel, 8), (ylabel, ax.set_ylabel, 8)):
        if text is not None:
            setter(text, fontsize=size)
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
    """A panel per entry of plot.panels, a line per series (log scale when all values are positive); an op keeps its
    colour in every panel, and within a panel a node's edges differ by line style."""
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


# ---------------------------------------------------------------- one call per figure
def save_figure(fig: Figure, path: Path) -> Path:
    """PNG at 100 dpi, written atomically; returns path."""
    buf = io.BytesIO()
    # matplotlib writes its version into the Software tag; a rebuild must not differ by it.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def skip_figure(out_path: Path, why: str) -> None:
    """Say why a figure is not drawn, and remove the copy an earlier build left."""
    log.warning("figure %s skipped: %s", Path(out_path).name, why)
    # A figure left from an earlier build would show runs the current inputs no longer hold.
    Path(out_path).unlink(missing_ok=True)


def _plot(out_path: Path, history_paths: Sequence[Path], data: Callable[..., Any], no_data: str) -> Any:
    """Read the histories, make the figure's data from them and draw it into out_path; returns the data drawn, or
    None (figure skipped) when a history is absent, or the data is None or an IIM figure without a line."""
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
    save_figure(draw_iim(plot) if isinstance(plot, IimPlot) else draw_alpha_vs_iim(plot), out_path)
    return plot


def plot_iim(history_path: Path, out_path: Path) -> IimPlot | None:
    """nb201_iim_over_epochs.png or darts_iim_over_epochs.png (normal cell) from an IS-DARTS search history."""
    return _plot(out_path, [history_path], iim_data, "the history holds no finite IIM value")


def plot_alpha_vs_iim(darts_history_path: Path, isdarts_history_path: Path, out_path: Path) -> AlphaVsIimPlot | None:
    """nb201_alpha_vs_iim.png (Fig. A.4) from an NB201 DARTS history and an IS-DARTS one."""
    return _plot(out_path, [darts_history_path, isdarts_history_path],
                 lambda darts, isdarts: alpha_vs_iim_data(darts, isdarts, str(darts_history_path),
                                                          str(isdarts_history_path)),
                 f"{isdarts_history_path} has no epoch with an IIM record")


COLLAPSE_TITLE = "NB201: the cell each search would return if it stopped there (200-epoch benchmark accuracy)"


def plot_collapse(runs_dir: Path, out_path: Path, title: str = COLLAPSE_TITLE) -> Path | None:
    """nb201_collapse.png: the argmax cell's CIFAR-10 test accuracy and share of parameter-free edges against
    weight steps, a line per NB201 search under runs_dir that records the cell (None, skipped, when none does),
    with the all-skip collapse level and the benchmark optimum."""
    histories = [h for h in search_histories(Path(runs_dir) / "nb201")
                 if any(r.cell is not None and r.weight_steps is not None for r in h.epochs)]
    if not histories:
        skip_figure(out_path, "no NB201 history records the argmax cell")
        return None
    fig = new_figure(9.0, 7.0, title)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    methods = list(dict.fromkeys(h.method for h in histories))
    for h in histories:
        points = [(r.weight_steps, r.cell) for r in h.epochs if r.cell is not None and r.weight_steps is not None]
        steps = [s for s, _ in points]
        style = {"color": f"C{methods.index(h.method) % 10}", "linestyle": LINESTYLES[h.seed % 4],
                 "marker": "o", "markersize": 3, "linewidth": 1.2, "label": run_name(h.method, h.seed)}
        if len(points) == 1:  # a method that selects once (I-DARTS): a lone dot would hide under the other lines
            style.update(marker="D", markersize=7, markerfacecolor="none", markeredgewidth=1.5, zorder=3)
        top.plot(steps, [c.benchmark.cifar10_test if c.benchmark else None for _, c in points], **style)
        bottom.plot(steps, [c.param_free / len(h.edges) for _, c in points], **style)
    for level, label in ((NB201_OPTIMUM_C10_TEST, "NB201 optimum"),
                         (NB201_COLLAPSE_C10_TEST, "all-skip collapse (paper: DARTS)")):
        top.axhline(level, color="0.45", linestyle=":", linewidth=1.0)
        top.annotate(f"{label} {level:.2f}", (0.01, level), xycoords=("axes fraction", "data"), fontsize=7,
                     va="bottom", color="0.3")
    style_axes(top, ylabel="argmax cell: NB201 CIFAR-10 test (%)")
    top.set_ylim(min(50.0, top.get_ylim()[0]), 96.0)
    # Between the all-skip level (54) and the benchmark optimum (94): the band the lines cross only in passing.
    top.legend(fontsize=7, ncol=2, loc="center right")
    style_axes(bottom, xlabel="weight steps (= α steps for the DARTS family)", ylabel="parameter-free edges (share)")
    bottom.set_ylim(-0.05, 1.05)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.94, bottom=0.08, hspace=0.08)
    return save_figure(fig, Path(out_path))


GRID_TITLE = "NB201 collapse study: the argmax cell of each search, per method (200-epoch benchmark accuracy)"


def plot_collapse_grid(runs_dir: Path, out_path: Path, title: str = GRID_TITLE) -> Path | None:
    """The study figure: one small panel per method (a line per seed, shared axes), so 15+ methods stay
    readable, with the all-skip collapse level and the benchmark optimum in every panel and one shared legend.
    A marker shows where a run's argmax cell first was the all-skip cell (x) or a `none`-cut cell (v)."""
    histories = [h for h in search_histories(Path(runs_dir) / "nb201")
                 if any(r.cell is not None and r.weight_steps is not None for r in h.epochs)]
    if not histories:
        skip_figure(out_path, "no NB201 history records the argmax cell")
        return None
    return save_figure(draw_collapse_grid(histories, title), Path(out_path))


def draw_collapse_grid(histories: Sequence[SearchHistory], title: str = GRID_TITLE) -> Figure:
    """plot_collapse_grid's figure: a panel per method (in first-seen order), a line per seed."""
    methods = list(dict.fromkeys(h.method for h in histories))
    cols = min(4, len(methods))
    rows = math.ceil(len(methods) / cols)
    width, height = 3.6 * cols, 2.4 * rows + 1.2
    # Margins in inches, so the figure title clears the first row's panel titles however many rows there are.
    fig = new_figure(width, height, title, y=1 - 0.12 / height, verticalalignment="top")
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=1.0 / height, top=1 - 0.75 / height,
                        wspace=0.12, hspace=0.4)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax in axes[len(methods):]:
        ax.set_visible(False)
    for ax, method in zip(axes, methods, strict=False):
        for h in (h for h in histories if h.method == method):
            points = [(r.weight_steps, r.cell, r.genotype) for r in h.epochs
                      if r.cell is not None and r.weight_steps is not None]
            steps = [s for s, _, _ in points]
            style = {"color": f"C{h.seed % 10}", "linestyle": LINESTYLES[h.seed % 4], "linewidth": 1.0}
            ax.plot(steps, [c.benchmark.cifar10_test if c.benchmark else None for _, c, _ in points],
                    label=f"seed {h.seed}", **style)
            for test, marker in ((Nb201Genotype.all_skip, "x"), (Nb201Genotype.none_cut, "v")):
                first = next(((s, c) for s, c, g in points if g and test(Nb201Genotype.from_arch_str(g))), None)
                if first is not None and first[1].benchmark is not None:
                    ax.plot([first[0]], [first[1].benchmark.cifar10_test], marker=marker, color=style["color"],
                            markersize=6, linestyle="none", label="_first")
        for level in (NB201_OPTIMUM_C10_TEST, NB201_COLLAPSE_C10_TEST):
            ax.axhline(level, color="0.45", linestyle=":", linewidth=0.9)
        style_axes(ax, title=DISPLAY_LABELS.get(method, method))
        ax.grid(alpha=0.3)
    for ax in axes[:len(methods)]:
        ax.set_ylim(0.0, 100.0)
    # The lowest panel of each column carries the step axis (the last row may be short).
    for ax in axes[max(0, len(methods) - cols):len(methods)]:
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel("weight steps (= α steps, bi-level)", fontsize=8)
    for ax in axes[::cols]:
        ax.set_ylabel("C10 test (%)", fontsize=8)
    seeds = sorted({h.seed for h in histories})
    # Legend entries drawn on no panel, so the panels hold only data.
    handles = [Line2D([], [], color=f"C{s % 10}", linestyle=LINESTYLES[s % 4], label=f"seed {s}") for s in seeds]
    handles += [Line2D([], [], color="0.45", linestyle=":",
                       label=f"optimum {NB201_OPTIMUM_C10_TEST:.2f} / all-skip {NB201_COLLAPSE_C10_TEST:.2f}"),
                Line2D([], [], marker="x", color="0.2", linestyle="none", label="first all-skip cell"),
                Line2D([], [], marker="v", color="0.2", linestyle="none", label="first none-cut cell (10.00)")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    return fig
