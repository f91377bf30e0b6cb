"""Tests for the paper_subset rows of Tables 1 and A.1 and their figure (isdarts.report.paper_subset): the
paper's NB201 search on the CIFAR-10 subset, compared with the paper's numbers and never judged."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest

from isdarts.benchmark.nb201 import ACCURACY_KEYS, default_table
from isdarts.report import ReportError, build_all, build_table1, build_table_a1, paper_subset
from isdarts.report.table1 import METHOD_LABELS as TABLE1_METHODS
from isdarts.report.table1 import PAPER_BY_METHOD as TABLE1_PAPER
from isdarts.report.table_a1 import PAPER_BY_METHOD as A1_PAPER

GOOD_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
OTHER_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
SKIP_ARCH = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
ARCHS = (GOOD_ARCH, OTHER_ARCH)
IS_LABEL = "paper settings, subset data: 5,551 training images, 87 steps per epoch against 782"
BILEVEL_LABEL = "paper settings, subset data: 5,551 training images, 44 steps per epoch against 391"
NB201_EDGES = ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
BILEVEL = {"darts1", "sdarts"}


# ---------------------------------------------------------------- fixture builders (the records' schemas)


def search_files(method: str, seed: int, epochs: int = 3, steps: int | None = None) -> tuple[dict, dict]:
    """(metrics.json, history.json) of a paper_subset search on the 5,551-image subset: ``steps`` weight steps per
    epoch (default: the data's, 87, or 44 for the bi-level methods), the argmax cell all-skip after epoch 1 and the
    final cell (GOOD_ARCH for even seeds, OTHER_ARCH for odd) after that."""
    steps = steps or (44 if method in BILEVEL else 87)
    arch = ARCHS[seed % 2]
    records = []
    for epoch in range(1, epochs + 1):
        cell = SKIP_ARCH if epoch == 1 else arch
        free = sum(op in ("skip_connect", "none", "avg_pool_3x3") for op in cell.replace("+", "").split("|")[1:-1])
        records.append({
            "epoch": epoch, "lr": 0.025, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0, "test_acc": 50.0,
            "images_per_s": 100.0, "epoch_seconds": 60.0, "alive": None, "genotype": cell, "iim": None,
            "shrink_step": None, "pruned": [], "weight_steps": epoch * steps,
            "alpha_steps": epoch * steps if method in BILEVEL else 0,
            "cell": {"param_free": free, "skip": free, "benchmark": default_table().lookup(cell).accuracies()}})
    history = {"space": "nb201", "method": method, "seed": seed, "edges": NB201_EDGES, "ops": NB201_OPS,
               "epochs": records}
    metrics = {
        "space": "nb201", "method": method, "seed": seed, "profile": "paper_subset", "paper_settings": False,
        "paper_mismatches": ["data: CIFAR-10 subset"], "genotype": arch, "arch_str": arch, "data_kind": "subset",
        "epochs": epochs, "final_test_acc": 50.0, "final_train_acc": 50.0, "final_train_loss": 1.0,
        "images_per_s_mean": 100.0, "search_hours": 1.0 + seed, "search_seconds": 3600.0 * (1 + seed),
        "cost_unit": "CPU-hours", "device_name": "cpu (2 threads, 2 cores)"}
    return metrics, history


def subset_run(runs: Path, method: str, seed: int, metrics: dict | None = None, steps: int | None = None) -> Path:
    """runs/paper_subset/nb201/<method>/seed_<seed>/{metrics,history}.json; ``metrics`` overrides keys."""
    out = runs / "paper_subset" / "nb201" / method / f"seed_{seed}"
    out.mkdir(parents=True)
    data, history = search_files(method, seed, steps=steps)
    (out / "metrics.json").write_text(json.dumps({**data, **(metrics or {})}), encoding="utf-8")
    (out / "history.json").write_text(json.dumps(history), encoding="utf-8")
    return out


@pytest.fixture
def runs(tmp_path) -> Path:
    """IS-DARTS seeds 0-3, DARTS (1st), I-DARTS and S-DARTS seed 0, as the issue runs them."""
    root = tmp_path / "runs"
    for seed in range(4):
        subset_run(root, "isdarts", seed)
    for method in ("darts1", "idarts", "sdarts"):
        subset_run(root, method, 0)
    return root


def lookup_result(method: str, arch: str, profile: str) -> dict:
    """A results/nb201_<method>.json as the lookup stage writes it (one seed)."""
    paper = profile == "paper"
    return {"space": "nb201", "method": method, "profile": profile, "paper_settings": paper,
            "profile_note": f"{profile} profile", "runs": [{
                "seed": 0, "arch_str": arch, "accuracies": default_table().lookup(arch).accuracies(),
                "search_hours": 0.1, "cost_unit": "CPU-hours", "paper_settings": paper, "paper_mismatches": []}]}


def quick_results(tmp_path: Path) -> Path:
    """Lookup results of the quick rows (and a judged paper-profile IS-DARTS), as the lookup stage writes them."""
    results = tmp_path / "results"
    results.mkdir()
    for method, arch, profile in (("isdarts", OTHER_ARCH, "paper"), ("darts1", SKIP_ARCH, "quick"),
                                  ("idarts", GOOD_ARCH, "quick"), ("sdarts", SKIP_ARCH, "quick")):
        (results / f"nb201_{method}.json").write_text(json.dumps(lookup_result(method, arch, profile)))
    return results


def table1_files(results: Path) -> list[Path]:
    """The lookup results Table 1 reads, as build_all picks them."""
    return [path for m in TABLE1_METHODS if (path := results / f"nb201_{m}.json").is_file()]


def line(markdown: str, method: str, label: str) -> str:
    return next(row for row in markdown.splitlines() if row.startswith(f"| ours | {method} | {label} |"))


def expected_cell(method: str, key: str, seeds: range, paper: float) -> str:
    values = [default_table().lookup(ARCHS[s % 2]).accuracies()[key] for s in seeds]
    mean = statistics.fmean(values)
    diff = f"{abs(mean - paper):.2f}"
    sign = "" if float(diff) == 0 else ("+" if mean > paper else "−")
    if len(values) == 1:
        return f"{mean:.2f}±0.00 (n=1, {sign}{diff})"
    return f"{mean:.2f}±{statistics.stdev(values):.2f} ({sign}{diff})"


def test_rows_labels_differences_and_n(tmp_path, runs):
    rows = paper_subset.read_rows(runs / "paper_subset")
    assert [r.method for r in rows] == ["isdarts", "idarts", "sdarts", "darts1"]  # registry order
    table1 = build_table1(table1_files(quick_results(tmp_path)), subset_rows=rows)
    a1 = build_table_a1(tmp_path / "results", rows)
    # Table 1: the methods with a Table-1 paper row; Table A.1: the ablation's.
    assert [r.method for r in table1.compared] == ["isdarts", "darts1"]
    assert [r.method for r in a1.compared] == ["isdarts", "idarts", "sdarts"]
    for table, paper, methods in ((table1, TABLE1_PAPER, ("isdarts", "darts1")),
                                  (a1, A1_PAPER, ("isdarts", "idarts", "sdarts"))):
        for method in methods:
            n = 4 if method == "isdarts" else 1
            label = BILEVEL_LABEL if method in ("darts1", "sdarts") else IS_LABEL
            row = next(r for r in table.compared if r.method == method)
            cells = [c.strip() for c in line(table.markdown, row.label, label).split("|")[1:-1]]
            assert cells[3] == str(n)
            assert cells[5:11] == [expected_cell(method, k, range(n), paper[method][k]) for k in ACCURACY_KEYS]
            assert not {"✓", "✗", "~", "∅"} & set("".join(cells))
            assert f"**{row.label}** (paper settings, subset data): profile `paper_subset`, {n} run" in table.markdown
    text = line(table1.markdown, "IS-DARTS", IS_LABEL)
    assert "(−" in text or "(+" in text  # each accuracy with its signed difference to the paper
    assert "5,551 training images of which 2,776 train the weights" in a1.markdown
    assert "against the paper's 391 = ⌈25,000 / 64⌉" in a1.markdown
    assert "against the paper's 782 = ⌈50,000 / 64⌉" in a1.markdown
    # The rule, stated once per table, and the figure named in the notes.
    for table in (table1, a1):
        assert ("Legend (paper settings, subset data): mean±std (our mean − paper number), no ✓/✗. These rows share "
                "the paper's network, schedule and epoch counts but not its data or its steps per epoch, so they are "
                "compared with the paper, not judged") in table.markdown
        assert "`figures/paper_subset_nb201_collapse.png`" in table.markdown
    csv_row = next(r for r in table1.csv.splitlines() if IS_LABEL in r)
    assert "compared, not judged: " in csv_row and "within" not in csv_row


def test_quick_rows_and_verdicts_are_untouched(tmp_path, runs):
    files = table1_files(quick_results(tmp_path))
    rows = paper_subset.read_rows(runs / "paper_subset")
    for plain, with_rows in ((build_table1(files), build_table1(files, subset_rows=rows)),
                             (build_table_a1(tmp_path / "results"), build_table_a1(tmp_path / "results", rows))):
        assert [r.method for r in with_rows.reproduced] == [r.method for r in plain.reproduced]
        assert [[(c.verdict.status, c.summary) for c in r.cells.values()] for r in with_rows.reproduced] == [
            [(c.verdict.status, c.summary) for c in r.cells.values()] for r in plain.reproduced]
        # Every line of the page and the CSV stays; the rows added are the subset rows only.
        for text in ("markdown", "csv"):
            before, after = getattr(plain, text).splitlines(), getattr(with_rows, text).splitlines()
            ours = [x for x in after if x.startswith(("| ours |", "ours,"))]
            assert [x for x in ours if x not in before] == [x for x in ours if "subset data: 5,551" in x]
            assert [x for x in after if x in before and x] == [x for x in before if x]


def test_a1_without_lookup_results_still_shows_the_rows(tmp_path, runs):
    a1 = build_table_a1(tmp_path / "absent", paper_subset.read_rows(runs / "paper_subset"))
    assert "No reproduced runs found under" in a1.markdown and "Only the paper's rows are shown" not in a1.markdown
    assert line(a1.markdown, "S-DARTS", BILEVEL_LABEL)
    assert build_table_a1(tmp_path / "absent").markdown.count("Only the paper's rows are shown") == 1


def test_no_runs_changes_nothing_and_the_figure_appears_only_with_runs(tmp_path):
    results = quick_results(tmp_path)
    runs = tmp_path / "runs"
    runs.mkdir()

    def build(name: str) -> dict[str, bytes]:
        out = tmp_path / name
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in build_all(results, runs, out)
                if p.suffix != ".png"} | {"pngs": repr(sorted(p.name for p in (out / "figures").glob("*.png")))}

    none = build("none")
    # An unfinished search (a seed folder without history.json and metrics.json yet) is no run.
    (runs / "paper_subset" / "nb201" / "isdarts" / "seed_0").mkdir(parents=True)
    assert build("unfinished") == none
    assert paper_subset.FIGURE not in none["pngs"]
    shutil.rmtree(runs / "paper_subset")
    subset_run(runs, "isdarts", 0)
    subset_run(runs, "darts1", 0)
    out = tmp_path / "with"
    written = build_all(results, runs, out)
    assert out / "figures" / paper_subset.FIGURE in written
    assert (out / "figures" / paper_subset.FIGURE).read_bytes().startswith(b"\x89PNG")
    assert IS_LABEL in (out / "table1.md").read_text() and IS_LABEL in (out / "table_a1.md").read_text()
    # The other reports do not change, and neither do the plot tables (the paper_subset runs are not mixed in).
    for name in ("table2.md", "table3.md", "table_a2.md", "study.md", "plots/nb201_search.csv", "table2.csv"):
        assert (out / name).read_bytes() == none[name], name
    # Runs gone: the figure an earlier build left goes too.
    shutil.rmtree(runs / "paper_subset")
    assert out / "figures" / paper_subset.FIGURE not in build_all(results, runs, out)
    assert not (out / "figures" / paper_subset.FIGURE).exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"profile": "quick"}, "must be of profile 'paper_subset'"),
    ({"paper_mismatches": ["data: CIFAR-10 subset", "C=8 (paper: 16)"]}, "must differ in its data only"),
    ({"data_kind": "tiny"}, "must differ in its data only"),
    ({"seed": 5}, "do not match its folder"),
])
def test_runs_that_are_not_paper_subset_runs_are_refused(tmp_path, change, message):
    subset_run(tmp_path, "isdarts", 0, change)
    with pytest.raises(ReportError, match=message):
        paper_subset.read_rows(tmp_path / "paper_subset")


def test_steps_per_epoch_must_match_the_data(tmp_path):
    subset_run(tmp_path, "idarts", 0, steps=782)
    with pytest.raises(ReportError, match="782 weight steps per epoch, but .* takes 87"):
        paper_subset.read_rows(tmp_path / "paper_subset")


def test_unknown_method_folder_is_refused(tmp_path):
    (tmp_path / "paper_subset" / "nb201" / "notamethod" / "seed_0").mkdir(parents=True)
    with pytest.raises(ReportError, match="not methods"):
        paper_subset.read_rows(tmp_path / "paper_subset")


def test_signed_differences():
    assert [paper_subset.signed(d) for d in (-0.456, 0.004, -0.004, 1.2)] == ["−0.46", "0.00", "0.00", "+1.20"]


def test_the_note_says_what_the_search_cost_counts(tmp_path):
    """The cost is the sum of the epochs' wall times, which counts time the machine gave other work; the note adds
    each run's cost at its median epoch, and names each seed's device when they differ."""
    root = tmp_path / "runs"
    for seed, seconds, device in ((0, (60.0, 60.0, 600.0), "cpu (2 threads, 2 cores)"),
                                  (1, (120.0, 30.0, 90.0), "cpu (1 thread, 2 cores)"),
                                  (2, (60.0, 60.0, 60.0), "cpu (1 thread, 2 cores)")):
        out = subset_run(root, "isdarts", seed, metrics={"device_name": device,
                                                         "search_hours": sum(seconds) / 3600})
        history = json.loads((out / "history.json").read_text())
        for record, secs in zip(history["epochs"], seconds, strict=True):
            record["epoch_seconds"] = secs
        (out / "history.json").write_text(json.dumps(history))
    note = paper_subset.read_rows(root / "paper_subset")[0].note()
    assert ("Search cost: the sum of each run's epoch wall times (0.20, 0.07, 0.05 CPU-hours), which counts in full "
            "the time the machine gave other work; at its median epoch (1.00, 1.50, 1.00 min) each run's 3 epochs "
            "take 0.05, 0.07, 0.05 CPU-hours.") in note
    assert "on cpu (2 threads, 2 cores) for seed 0, cpu (1 thread, 2 cores) for seeds 1, 2;" in note


def test_a_run_that_selects_once_is_drawn_as_a_marker_above_the_lines(tmp_path, monkeypatch):
    """I-DARTS records its cell at the last epoch only: its one point sits where IS-DARTS's lines end, so the
    figure draws it as a large hollow diamond above them, not as a dot hidden beneath."""
    from isdarts.report import figures

    root = tmp_path / "runs"
    subset_run(root, "isdarts", 0)
    out = subset_run(root, "idarts", 0)
    history = json.loads((out / "history.json").read_text())
    for record in history["epochs"][:-1]:
        record["cell"] = record["genotype"] = None
    (out / "history.json").write_text(json.dumps(history))
    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: drawn.append(fig) or Path(path))
    rows = paper_subset.read_rows(root / "paper_subset")
    paper_subset.build_figure(rows, root / "paper_subset", tmp_path / "figures")
    top = drawn[0].axes[0]
    lines = {line.get_label(): line for line in top.get_lines() if not line.get_label().startswith("_")}
    once, every = lines["I-DARTS seed 0"], lines["IS-DARTS seed 0"]
    assert len(once.get_xdata()) == 1 and len(every.get_xdata()) == 3
    assert once.get_marker() == "D" and once.get_markersize() >= 2 * every.get_markersize()
    assert once.get_zorder() > every.get_zorder()
