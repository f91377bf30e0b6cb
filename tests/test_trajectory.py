"""The argmax-cell trajectory (collapse study): each epoch's recorded cell is re-derived here from that
epoch's recorded α or IIM, its NB201 accuracies from the table, and the DVC plots rows match the history."""

import csv
import io
import math

import pytest
import torch
from test_search_loop import arrays, search, tiny_darts_cfg, tiny_params  # noqa: F401 (fixture)

from isdarts.benchmark.nb201 import ACCURACY_KEYS, default_table
from isdarts.records import SearchHistory
from isdarts.report import render
from isdarts.report.trajectory import SEARCH_COLUMNS, op_weight_rows, search_rows, to_csv
from isdarts.search.loop import epoch_metrics
from isdarts.spaces.darts.genotype import PARAM_FREE_OPS
from isdarts.spaces.darts.space import SPACE as DARTS_SPACE
from isdarts.spaces.nb201.genotype import NB201_OPS, Nb201Genotype
from isdarts.spaces.nb201.space import SPACE as NB201

NB201_METHODS = ["isdarts", "idarts", "darts1", "darts2", "lambda_darts", "sdarts"]


def iim_choice(record) -> list[int]:
    """Per edge, the alive op with the lowest hooked IIM: the cell a final selection would keep."""
    return [min((o for o in range(len(NB201_OPS)) if alive[o]), key=lambda o: row[o])
            for row, alive in zip(record["iim"], record["alive"], strict=True)]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("method", NB201_METHODS)
def test_nb201_each_epoch_records_the_cell_a_stop_there_returns(arrays, tmp_path, method):  # noqa: F811
    result = search(tiny_params(method), arrays, tmp_path / method)
    history = result["history"]
    epochs = history["epochs"]
    bilevel = method not in ("isdarts", "idarts")
    for r in epochs:
        if bilevel:  # argmax of the recorded mixing weights, `none` included
            expected = Nb201Genotype.from_op_indices(torch.tensor(r["op_weights"]).argmax(dim=1).tolist())
            assert all(math.isclose(sum(row), 1.0, rel_tol=1e-6) for row in r["op_weights"])
            assert r["alpha_steps"] == r["weight_steps"] > 0
        elif r["iim"] is not None and sum(map(sum, r["alive"])) > 6:
            expected = Nb201Genotype.from_op_indices(iim_choice(r))
            assert r["op_weights"] is None and r["alpha_steps"] == 0
        elif sum(map(sum, r["alive"])) == 6:  # the single path shrinking left
            expected = Nb201Genotype.from_op_indices([alive.index(1) for alive in r["alive"]])
        else:  # I-DARTS before its one measurement: no cell yet
            assert method == "idarts" and r["iim"] is None
            assert r["genotype"] is None and r["cell"] is None
            continue
        assert r["genotype"] == str(expected)
        assert r["cell"] == {
            "param_free": expected.param_free_count(), "skip": expected.skip_count(),
            "benchmark": default_table().lookup(expected).accuracies(),
        }
    assert epochs[-1]["genotype"] == result["metrics"]["genotype"]
    assert [r["weight_steps"] for r in epochs] == [k * epochs[0]["weight_steps"] for k in range(1, 6)]

    # The DVC plot rows (report side) read the same history back through its record.
    record = SearchHistory.from_json(history, "history.json")
    rows = list(csv.DictReader(io.StringIO(to_csv(search_rows(record), SEARCH_COLUMNS + ACCURACY_KEYS))))
    assert len(rows) == 5
    assert [float(row["cifar10_test"]) if row["cifar10_test"] else None for row in rows] == [
        r["cell"]["benchmark"]["cifar10_test"] if r["cell"] else None for r in epochs]
    assert [row["param_free"] for row in rows] == [str(r["cell"]["param_free"]) if r["cell"] else "" for r in epochs]
    weights = op_weight_rows(record)
    if bilevel:  # every alive (edge, op) of every epoch, the recorded softmax(α)
        alive = sum(sum(map(sum, r["alive"])) for r in epochs)
        assert len(weights) == alive and {w["source"] for w in weights} == {"softmax(alpha)"}
        first = next(w for w in weights if w["edge"] == "1<-0" and w["op"] == "skip_connect")
        assert first["weight"] == epochs[0]["op_weights"][0][1]
    else:  # the IIM importance on measured epochs: 1/IIM normalised over the ops alive when measured
        measured = [r for r in epochs if r["iim"] is not None]
        assert {w["epoch"] for w in weights} == {r["epoch"] for r in measured}
        for r in measured:
            for e in range(6):
                edge = [w["weight"] for w in weights if w["epoch"] == r["epoch"] and w["edge"] == history["edges"][e]]
                assert len(edge) == sum(v is not None for v in r["iim"][e])
                assert math.isclose(sum(edge), 1.0, rel_tol=1e-9)
    metrics = epoch_metrics(epochs[-1], NB201)
    assert metrics["cell/cifar10_test"] == epochs[-1]["cell"]["benchmark"]["cifar10_test"]
    assert ("op_weight/3<-2/skip_connect" in metrics) == bilevel


def darts_counts(genotype: str, kind: str):
    """Per node, (param-free, skip) inputs, counted from the genotype's printed form."""
    part = genotype.split(f"{kind}: ")[1].split(" concat")[0]
    nodes = [[pair.split("~")[0] for pair in node.strip(" |").split("|")] for node in part.split(" + ")]
    return [sum(op in PARAM_FREE_OPS for op in ops) for ops in nodes], [ops.count("skip_connect") for ops in nodes]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("method", ["isdarts", "darts1"])
def test_darts_space_records_parameter_free_and_skip_inputs_per_node(arrays, tmp_path, method):  # noqa: F811
    result = search(tiny_darts_cfg(method), arrays, tmp_path / method)
    epochs = result["history"]["epochs"]
    # IS-DARTS measures the IIM after every epoch (every_epoch), so a cell is defined from the first one on.
    assert all(r["genotype"] is not None for r in epochs)
    for r in epochs:
        for kind in ("normal", "reduce"):
            param_free, skip = darts_counts(r["genotype"], kind)
            assert r["cell"]["param_free_per_node"][kind] == param_free
            assert r["cell"]["skip_per_node"][kind] == skip
        assert r["cell"]["param_free"] == sum(r["cell"]["param_free_per_node"]["normal"])
        assert (r["op_weights"] is not None) == (method == "darts1")
    assert epochs[-1]["genotype"] == result["metrics"]["genotype"]
    if method == "isdarts":  # epoch 1: per node the two alive candidates with the lowest IIM
        first = epochs[0]
        for kind in ("normal", "reduce"):
            table, alive = first["iim"][kind], first["alive"][kind]
            ranked = sorted(((table[e][o], e, o) for e in range(len(table)) for o in range(len(table[e]))
                             if alive[e][o] and table[e][o] is not None), key=lambda t: t[0])
            assert ranked  # the preview picked from measured, alive candidates only
    metrics = epoch_metrics(epochs[-1], DARTS_SPACE)
    assert metrics["cell/param_free"] == epochs[-1]["cell"]["param_free"]
    rows = search_rows(SearchHistory.from_json(result["history"], "history.json"))
    assert [row["skip"] for row in rows] == [r["cell"]["skip"] for r in epochs]
    assert not any(k in rows[0] for k in ACCURACY_KEYS)


@pytest.mark.usefixtures("one_thread")
def test_study_page_and_collapse_figure_show_where_each_run_ended(arrays, tmp_path):  # noqa: F811
    """runs/study as scripts/run_study.py leaves it: the page's rows are the histories' last epochs, the figure
    is a PNG drawn from every run and rebuilds byte-identically; without runs the page says how to make them."""
    import json

    from isdarts.report.figures import plot_collapse_grid
    from isdarts.report.study import STUDY_FIGURE, build_study

    empty, figures = build_study(tmp_path / "none", tmp_path / "figures")
    assert figures == () and empty.csv.count("\n") == 1
    assert "No study run is committed under `runs/study/`" in empty.markdown
    study = tmp_path / "study"
    histories = {}
    for method in ("darts1", "isdarts"):
        result = search(tiny_params(method), arrays, tmp_path / "ckpt" / method)
        folder = study / "nb201" / method / "seed_0"
        folder.mkdir(parents=True)
        (folder / "history.json").write_text(json.dumps(result["history"]))
        (folder / "metrics.json").write_text(json.dumps(result["metrics"]))
        histories[method] = result["history"]
    page, (figure,) = build_study(study, tmp_path / "figures")
    assert figure == tmp_path / "figures" / STUDY_FIGURE and figure.read_bytes().startswith(b"\x89PNG")
    rows = list(csv.DictReader(io.StringIO(page.csv)))
    assert [row["method"] for row in rows] == ["DARTS (1st)", "IS-DARTS"]
    for row, method in zip(rows, ("darts1", "isdarts"), strict=True):
        last = histories[method]["epochs"][-1]
        assert row["weight_steps"] == str(last["weight_steps"]) and row["alpha_steps"] == str(last["alpha_steps"])
        # The CSV keeps 4 decimals (some benchmark accuracies are means over 3 seeds, 93.096667).
        assert float(row["final_c10"]) == pytest.approx(last["cell"]["benchmark"]["cifar10_test"], abs=5e-5)
        assert row["final_free"] == f"{last['cell']['param_free']}/6" and row["profile"] == "smoke"
        peak = max(r["cell"]["param_free"] for r in histories[method]["epochs"] if r["cell"])
        assert row["peak_free"].startswith(f"{peak}/6 (")
    assert "DARTS (1st) seed 0: after" in page.markdown and "study-profile numbers" in page.markdown
    # The summary: when each run's argmax cell first was the all-skip or a none-cut cell (from its history).
    for row, method in zip(rows, ("darts1", "isdarts"), strict=True):
        for column, test in (("first_all_skip", "all_skip"), ("first_none_cut", "none_cut")):
            hits = [r for r in histories[method]["epochs"]
                    if getattr(Nb201Genotype.from_arch_str(r["genotype"]), test)()]
            want = str(hits[0]["alpha_steps"] or hits[0]["weight_steps"]) if hits else ""
            assert row[column] == want, (method, column)
    # Over methods: a sentence naming the methods that reached each failure cell, and a row per method.
    assert "## Summary" in page.markdown and "2 methods, 2 runs." in page.markdown
    skipped = [label for row, label in zip(rows, ("DARTS (1st)", "IS-DARTS"), strict=True) if row["first_all_skip"]]
    named = f"{len(skipped)} ({', '.join(skipped)})" if skipped else "none"
    assert f"at an epoch's end in at least one seed: {named};" in page.markdown
    for row in rows:
        c10 = render.number(float(row["final_c10"])).md
        assert (f"| {row['method']} | 0 | {int(bool(row['first_all_skip']))}/1 | {int(bool(row['first_none_cut']))}/1 "
                f"| {row['final_free']} | {c10} |") in page.markdown, row["method"]
    first = figure.read_bytes()
    assert plot_collapse_grid(study, tmp_path / "again.png").read_bytes() == first


def test_none_cut_cells_are_exactly_the_benchmarks_constant_networks():
    """A none-cut cell (no path from input to output avoiding `none`) outputs zeros: over all 15,625 cells, the
    benchmark scores exactly those at 10.00 CIFAR-10 test (341 cells)."""
    from isdarts.benchmark.nb201 import lookup
    from isdarts.spaces.nb201.genotype import all_nb201_genotypes

    cut = {g.to_arch_str() for g in all_nb201_genotypes() if g.none_cut()}
    ten = {g.to_arch_str() for g in all_nb201_genotypes() if lookup(g).cifar10_test == 10.0}
    assert cut == ten and len(cut) == 341
    skip = [g for g in all_nb201_genotypes() if g.all_skip()]
    assert len(skip) == 1 and lookup(skip[0]).cifar10_test == pytest.approx(54.30, abs=0.005)


def test_the_study_figure_has_one_panel_per_method_and_one_shared_legend(tmp_path):
    """15 methods stay readable: a panel per method with a line per seed, one legend for the whole figure, and a
    marker where a run first had the all-skip cell (a committed DARTS study run, relabelled as 15 methods)."""
    import dataclasses
    import json
    from pathlib import Path

    from isdarts.report.figures import draw_collapse_grid

    raw = json.loads((Path(__file__).resolve().parents[1] / "runs/study/nb201/darts1/seed_0/history.json").read_text())
    darts = SearchHistory.from_json(raw)
    methods = [f"method_{i}" for i in range(15)]
    histories = [dataclasses.replace(darts, method=m, seed=seed) for m in methods for seed in (0, 1)]
    fig = draw_collapse_grid(histories)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 15 and [ax.get_title() for ax in panels] == methods
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in panels)
    for ax in panels:
        seeds = [line for line in ax.get_lines() if line.get_label().startswith("seed")]
        assert [line.get_label() for line in seeds] == ["seed 0", "seed 1"]
        # The all-skip marker sits at the first epoch whose argmax cell is all skip_connect.
        first = next(r for r in darts.epochs if Nb201Genotype.from_arch_str(r.genotype).all_skip())
        markers = [line for line in ax.get_lines() if line.get_marker() == "x"]
        assert markers and all(list(m.get_xdata()) == [first.weight_steps] for m in markers)
    # The figure title clears every panel title, and each column's lowest panel (the last row holds 3 of 4) shows
    # the step axis: its tick labels and its label.
    renderer = fig.canvas.get_renderer()
    title_bottom = fig._suptitle.get_window_extent(renderer).y0
    assert all(ax.title.get_window_extent(renderer).y1 < title_bottom for ax in panels)
    lowest = panels[-4:]
    assert [ax.get_title() for ax in lowest] == methods[11:]
    for ax in panels:
        shows_steps = ax in lowest
        labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
        assert bool(labels) == shows_steps and bool(ax.get_xlabel()) == shows_steps, ax.get_title()
