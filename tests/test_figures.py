"""Tests for isdarts.report.figures: the plotted series are the history's values, PNGs are written and stable."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from isdarts.records import SearchHistory
from isdarts.report import ReportError, build_all
from isdarts.report.figures import (
    SHRINK_LINE_LABEL,
    Series,
    draw_alpha_vs_iim,
    draw_iim,
    iim_data,
    plot_alpha_vs_iim,
    plot_iim,
)
from isdarts.report.trajectory import importance
from isdarts.spaces.darts.ops import DARTS_SEARCH_OPS
from isdarts.spaces.darts.supernet import DARTS_EDGES

NB201_EDGES = ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- fixture builders (the CONTRACTS schemas)


def _record(epoch: int, iim, shrink_step=None, **extra) -> dict:
    return {"epoch": epoch, "lr": 0.025, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0, "test_acc": 50.0,
            "images_per_s": 100.0, "epoch_seconds": 1.0, "alive": None, "genotype": "", "iim": iim,
            "shrink_step": shrink_step, "pruned": [], **extra}


def nb201_iim(epoch: int) -> list[list[float | None]]:
    """6x5 hooked values: `none` is +inf, avg_pool is pruned (null) after epoch 2, the rest finite."""
    rows = []
    for e in range(6):
        rows.append([math.inf, 100.0 + 10 * e + epoch, 30.0 + e - epoch, 20.0 + e * epoch,
                     (300.0 + e) if epoch <= 2 else None])
    return rows


def nb201_history(method: str = "isdarts", epochs: int = 4) -> dict:
    records = []
    for epoch in range(1, epochs + 1):
        iim = nb201_iim(epoch) if method == "isdarts" and epoch >= 2 else None
        extra = {}
        if method != "isdarts":
            extra = {"alpha": [[0.1 * epoch * (o - e % 3) for o in range(5)] for e in range(6)], "arch_loss": 1.0}
        records.append(_record(epoch, iim, shrink_step=(epoch - 2) if method == "isdarts" and epoch in (2, 3)
                               else None, **extra))
    return {"space": "nb201", "method": method, "seed": 0, "edges": NB201_EDGES, "ops": NB201_OPS,
            "epochs": records}


def darts_history() -> dict:
    """A DARTS-space search history: 14x8 IIM per cell kind; only dua_sepc_3x3 and skip are finite on 0<-*."""
    records = [_record(1, None)]
    for epoch in (2, 3):
        normal = [[None] * 8 for _ in DARTS_EDGES]
        for e, edge in enumerate(DARTS_EDGES):
            normal[e][0] = math.inf  # none
            normal[e][2] = float(epoch * 10 + e)  # dua_sepc_3x3 on every edge
            if edge.startswith("0<-"):
                normal[e][1] = float(epoch + e)  # skip on node 0's edges only
        records.append(_record(epoch, {"normal": normal, "reduce": [[1.0] * 8 for _ in DARTS_EDGES]},
                               shrink_step=0 if epoch == 2 else None))
    return {"space": "darts", "method": "isdarts", "seed": 0, "edges": list(DARTS_EDGES),
            "ops": list(DARTS_SEARCH_OPS), "kinds": ["normal", "reduce"], "epochs": records}


def put(root: Path, rel: str, data: dict | str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_MAGIC) and len(data) > 5000


def _plotted(ax) -> dict[str, tuple[list, list]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()
            if not line.get_label().startswith("_")}


# ---------------------------------------------------------------- IIM over epochs


def test_nb201_iim_series_are_the_history_values(tmp_path):
    history = nb201_history()
    path = put(tmp_path, "runs/nb201/isdarts/seed_0/history.json", history)
    out = tmp_path / "fig" / "nb201_iim_over_epochs.png"
    plot = plot_iim(path, out)
    assert _is_png(out)
    assert list(plot.panels) == NB201_EDGES
    assert plot.shrink_epochs == (2, 3)
    for e, edge in enumerate(NB201_EDGES):
        series = plot.panels[edge]
        assert "none" not in series  # +inf at every epoch: nothing finite to plot
        assert series["skip_connect"] == Series(edge, "skip_connect", (2, 3, 4),
                                                tuple(nb201_iim(ep)[e][1] for ep in (2, 3, 4)))
        assert series["avg_pool_3x3"].epochs == (2,)  # null once pruned
    fig = draw_iim(plot)
    for ax, edge in zip(fig.axes, NB201_EDGES, strict=True):
        lines = _plotted(ax)
        assert set(lines) == set(plot.panels[edge])
        for label, s in plot.panels[edge].items():
            assert lines[label] == (list(s.epochs), list(s.values))
        assert sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_label() == SHRINK_LINE_LABEL) == [2, 3]
        assert ax.get_yscale() == "log"


def test_darts_iim_panels_per_node(tmp_path):
    path = put(tmp_path, "history.json", darts_history())
    out = tmp_path / "darts_iim_over_epochs.png"
    plot = plot_iim(path, out)
    assert _is_png(out)
    assert list(plot.panels) == ["node 0", "node 1", "node 2", "node 3"]
    node0 = plot.panels["node 0"]
    assert sorted(node0) == ["0<-0 dua_sepc_3x3", "0<-0 skip_connect", "0<-1 dua_sepc_3x3", "0<-1 skip_connect"]
    e = DARTS_EDGES.index("0<-1")
    assert node0["0<-1 skip_connect"] == Series("0<-1", "skip_connect", (2, 3), (2.0 + e, 3.0 + e))
    assert len(plot.panels["node 3"]) == 5  # one candidate per input edge of node 3
    fig = draw_iim(plot)
    assert _plotted(fig.axes[0])["0<-1 skip_connect"] == ([2, 3], [2.0 + e, 3.0 + e])
    reduce = iim_data(SearchHistory.from_json(darts_history()), kind="reduce")
    assert len(reduce.panels["node 0"]) == 16  # every (edge, op) of node 0 is finite in the reduce cell


def test_malformed_history(tmp_path):
    history = nb201_history()
    history["epochs"][2]["iim"] = [[1.0] * 5] * 5  # 5 edges, the history names 6
    path = put(tmp_path, "history.json", history)
    with pytest.raises(ReportError, match=r"history\.json: epochs\[2\]\.iim: expected a 6x5 list of lists"):
        plot_iim(path, tmp_path / "x.png")
    del history["edges"]
    with pytest.raises(ReportError, match="missing key 'edges'"):
        iim_data(SearchHistory.from_json(history, "h.json"))
    put(tmp_path, "bad.json", "{")
    with pytest.raises(ReportError, match="bad.json.*malformed JSON"):
        plot_iim(tmp_path / "bad.json", tmp_path / "y.png")


# ---------------------------------------------------------------- DARTS α against IS-DARTS importance


def test_alpha_vs_importance(tmp_path):
    darts = put(tmp_path, "darts1.json", nb201_history("darts1", epochs=3))
    isd = put(tmp_path, "isdarts.json", nb201_history("isdarts"))
    out = tmp_path / "nb201_alpha_vs_iim.png"
    plot = plot_alpha_vs_iim(darts, isd, out)
    assert _is_png(out)
    assert (plot.alpha_epoch, plot.iim_epoch) == (3, 2)  # DARTS's last epoch, IS-DARTS's first IIM epoch
    alpha_last = np.array(nb201_history("darts1", epochs=3)["epochs"][-1]["alpha"])
    hooked = nb201_iim(2)
    for e, edge in enumerate(NB201_EDGES):
        expected_alpha = np.exp(alpha_last[e]) / np.exp(alpha_last[e]).sum()
        assert plot.alpha[edge] == pytest.approx(expected_alpha.tolist())
        inverse = np.array([0.0] + [1.0 / v for v in hooked[e][1:]])  # none (+inf) has importance 0
        assert plot.importance[edge] == pytest.approx((inverse / inverse.sum()).tolist())
        assert sum(plot.importance[edge]) == pytest.approx(1.0)
    fig = draw_alpha_vs_iim(plot)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([*plot.alpha["1<-0"], *plot.importance["1<-0"]])


def test_importance_edge_cases():
    assert importance([None, math.inf, 2.0, 2.0, 1.0]) == pytest.approx((0, 0, 0.25, 0.25, 0.5))
    assert importance([None, math.inf, math.nan, 0.0, -1.0]) == (0.0,) * 5


def test_alpha_vs_iim_needs_alpha(tmp_path):
    darts = nb201_history("darts1")
    del darts["epochs"][-1]["alpha"]
    with pytest.raises(ReportError, match=r"d\.json: epochs\[-1\]: missing key 'alpha'"):
        plot_alpha_vs_iim(put(tmp_path, "d.json", darts), put(tmp_path, "i.json", nb201_history()), tmp_path / "o.png")


# ---------------------------------------------------------------- skipping and build_all


def test_missing_history_is_skipped_with_warning(tmp_path, caplog):
    out = tmp_path / "nb201_iim_over_epochs.png"
    out.write_bytes(b"stale")
    with caplog.at_level(logging.WARNING, logger="isdarts.report.figures"):
        assert plot_iim(tmp_path / "absent.json", out) is None
    assert "skipped" in caplog.text and "absent.json" in caplog.text
    assert not out.exists()  # a figure from an earlier build must not outlive its input
    no_iim = put(tmp_path, "h.json", nb201_history("darts1"))
    assert plot_iim(no_iim, out) is None


def test_build_all_lists_figures_and_rebuilds_identically(tmp_path):
    lookup = {"space": "nb201", "method": "isdarts", "profile": "quick", "paper_settings": False,
              "profile_note": "", "runs": [{"seed": 0, "arch_str": "x", "search_hours": 0.1,
                                            "cost_unit": "CPU-hours", "accuracies": {
                                                k: 50.0 for k in ("cifar10_valid", "cifar10_test", "cifar100_valid",
                                                                  "cifar100_test", "imagenet16_valid",
                                                                  "imagenet16_test")}}]}
    put(tmp_path, "results/nb201_isdarts.json", lookup)
    runs = tmp_path / "runs"
    put(runs, "nb201/isdarts/seed_3/history.json", nb201_history())
    put(runs, "nb201/isdarts/seed_10/history.json", nb201_history())  # figures draw seed 3, the lowest
    put(runs, "nb201/darts1/seed_0/history.json", nb201_history("darts1"))
    figures = tmp_path / "reports" / "figures"
    written = build_all(tmp_path / "results", runs, tmp_path / "reports")
    # No history records the argmax cell, so the collapse figure is skipped; the plot tables hold every seed.
    assert [p for p in written if p.suffix == ".png"] == [figures / "nb201_iim_over_epochs.png",
                                                          figures / "nb201_alpha_vs_iim.png"]
    nb201_rows = (tmp_path / "reports" / "plots" / "nb201_search.csv").read_text().splitlines()
    assert len(nb201_rows) == 1 + 3 * len(nb201_history()["epochs"])
    first = {p: p.read_bytes() for p in written}
    again = build_all(tmp_path / "results", runs, tmp_path / "reports")
    assert again == written
    assert {p: p.read_bytes() for p in again} == first
