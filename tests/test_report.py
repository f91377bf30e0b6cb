"""Tests for isdarts.report: the paper's numbers, Table 1 statistics, verdicts and rendering."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from isdarts.benchmark.nb201 import ACCURACY_KEYS, default_table
from isdarts.registry import METHODS
from isdarts.report import ReportError, build_table1, paper, write_table
from isdarts.report.render import csv_header, fmt_mean_std, fmt_num, judge, markdown_table
from isdarts.report.table1 import ALL_SKIP_ARCH, COLUMNS, TOLERANCE, references

# Real NB201 cells: the C100-test optimum (the paper's IS-DARTS row), a good one and a weaker one.
OPTIMUM_ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
GOOD_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
OTHER_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|nor_conv_3x3~0|avg_pool_3x3~1|skip_connect~2|"

LABELS = {"isdarts": "IS-DARTS", "darts1": "DARTS (1st)", "darts2": "DARTS (2nd)", "lambda_darts": "Λ-DARTS"}


@pytest.fixture(scope="module")
def bench():
    return default_table()


def _run(bench, seed: int, arch: str, hours: float = 0.05, unit: str = "CPU-hours") -> dict:
    return {"seed": seed, "arch_str": arch, "accuracies": bench.lookup(arch).accuracies(),
            "search_hours": hours, "cost_unit": unit, "device_name": "cpu (2 threads)",
            "skip_count": 0, "param_free_count": 0}


def _result(method: str, runs: list[dict], paper_settings: bool = False) -> dict:
    profile = "paper" if paper_settings else "quick"
    return {"space": "nb201", "method": method, "method_label": LABELS[method], "profile": profile,
            "paper_settings": paper_settings, "profile_note": f"{profile} profile note", "runs": runs}


def _write(tmp_path: Path, name: str, data: dict | str) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _row(report, method):
    return next(r for r in report.reproduced if r.method == method)


# ---------------------------------------------------------------- the paper's numbers


def test_table1_paper_rows_are_the_spec_numbers():
    assert [r.method for r in paper.TABLE1] == [
        "ENAS", "DARTS (1st)", "DARTS (2nd)", "GDAS", "SETN", "DSNAS", "PC-DARTS", "DARTS-", "IS-DARTS"]
    t1 = {r.method: r for r in paper.TABLE1}
    enas = t1["ENAS"]
    assert enas.cost_hours == 3.7
    assert [(enas.cells[k].mean, enas.cells[k].std) for k in ACCURACY_KEYS] == [
        (37.51, 3.19), (53.89, 0.58), (13.37, 2.35), (13.96, 2.33), (15.06, 1.95), (14.84, 2.10)]
    dsnas = t1["DSNAS"]
    assert dsnas.cost_hours is None and dsnas.cells["cifar100_valid"] == paper.PaperCell(30.87, 16.40)
    isd = t1["IS-DARTS"]
    assert isd.cost_hours == 2.0
    assert [isd.cells[k].mean for k in ACCURACY_KEYS] == [91.55, 94.36, 73.49, 73.51, 46.37, 46.34]
    assert all(isd.cells[k].std == 0.0 for k in ACCURACY_KEYS)
    for label in ("DARTS (1st)", "DARTS (2nd)"):
        assert [t1[label].cells[k].mean for k in ACCURACY_KEYS] == [
            39.77, 54.30, 15.03, 15.61, 16.43, 16.32]
    assert t1["DARTS (2nd)"].cost_hours == 10.2
    assert "Λ-DARTS" not in t1


def test_other_paper_tables_and_claims():
    t2 = {r.architecture: r for r in paper.TABLE2}
    assert len(paper.TABLE2) == 18
    assert t2["IS-DARTS"].test_error == paper.PaperCell(2.56, 0.04)
    assert t2["IS-DARTS"].params_m == paper.PaperCell(4.25, 0.22) and t2["IS-DARTS"].cost_gpu_days == 0.42
    assert t2["DenseNet-BC"].cost_gpu_days is None and t2["AmoebaNet-A"].cost_gpu_days == 3150
    t3 = {r.architecture: r for r in paper.TABLE3}
    assert len(paper.TABLE3) == 20
    assert (t3["IS-DARTS (C)"].top1_error, t3["IS-DARTS (C)"].top5_error) == (24.1, 7.1)
    assert t3["IS-DARTS (C)"].searched_on == "CIFAR-10" and t3["DARTS- (I)"].searched_on == "ImageNet"
    assert t3["ShuffleNet 2×"].top5_error is None and t3["SDARTS-ADV (C)"].params_m is None
    a1 = {r.method: r for r in paper.TABLE_A1}
    assert a1["S-DARTS"].accuracies["cifar10_test"] == 70.92
    assert a1["I-DARTS"].accuracies["cifar100_test"] == 69.83
    assert [(r.steps, r.interval_epochs, r.test_error) for r in paper.TABLE_A2] == [
        (1, None, 2.98), (2, 18, 2.87), (4, 6, 2.51), (7, 3, 2.56), (10, 2, 2.58), (20, 1, 2.95)]
    assert paper.CLAIMS.isdarts_gain_over_darts_pct == 113.43
    assert paper.CLAIMS.isdarts_cost_reduction_pct == 37.5
    assert (paper.CLAIMS.c100_search_cifar100_valid, paper.CLAIMS.c100_search_cifar100_test) == (70.71, 71.11)


A2_COLUMNS = ["label", "rate", "steps", "interval_epochs", "test_error"]


@pytest.mark.parametrize("columns, row, message", [
    (A2_COLUMNS, [0.5, 0.5, 2, 18, 2.87], r"table_a2\.rows\[0\]: key 'label' must be str, got float"),  # unquoted
    (A2_COLUMNS, ["0.5", 0.5, 2.0, 18, 2.87], r"rows\[0\]: key 'steps' must be int, got float"),
    (A2_COLUMNS, ["0.5", 0.5, 2, True, 2.87], r"rows\[0\]: key 'interval_epochs' must be int or NoneType, got True"),
    (A2_COLUMNS, ["0.5", "0.5", 2, 18, 2.87], r"rows\[0\]: key 'rate' must be int or float, got str"),
    (A2_COLUMNS, ["0.5", 0.5, 2, 18], r"table_a2\.rows\[0\] does not hold one value per column"),
    ([*A2_COLUMNS[:-1], "test_err"], ["0.5", 0.5, 2, 18, 2.87], r"rows\[0\] has keys .*'test_err'.*; expected"),
])
def test_paper_numbers_are_checked_on_loading(columns, row, message):
    good = paper._table({"table_a2": {"columns": A2_COLUMNS, "rows": [["0.5", 0.5, 2, 18, 2.87]]}}, "table_a2",
                        paper.ShrinkRateRow)
    assert good == (paper.ShrinkRateRow("0.5", 0.5, 2, 18, 2.87),)
    with pytest.raises(ReportError, match=r"paper_numbers\.yaml: .*" + message):
        paper._table({"table_a2": {"columns": columns, "rows": [row]}}, "table_a2", paper.ShrinkRateRow)


def test_paper_cells_and_accuracy_columns_load_as_typed_rows():
    columns = ["architecture", "test_error", "params_m", "cost_gpu_days", "method"]
    rows = paper._table({"t": {"columns": columns, "rows": [["X", [2.5, 0.1], 3.3, None, "RL"]]}}, "t",
                        paper.Table2Row)
    assert rows == (paper.Table2Row("X", paper.PaperCell(2.5, 0.1), paper.PaperCell(3.3), None, "RL"),)
    with pytest.raises(ReportError, match=r"t\.rows\[0\]\.test_error: expected 2 items, got 3"):
        paper._table({"t": {"columns": columns, "rows": [["X", [2.5, 0.1, 0.2], 3.3, None, "RL"]]}}, "t",
                     paper.Table2Row)
    accuracies = dict(zip(ACCURACY_KEYS, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], strict=True))
    row = paper._build(paper.AblationRow, {"method": "M", **accuracies}, "table_a1.rows[0]")
    assert row.method == "M" and dict(row.accuracies) == accuracies
    with pytest.raises(TypeError):
        row.accuracies["cifar10_valid"] = 0.0  # read-only, like every paper row
    with pytest.raises(ReportError, match=r"claims has keys .*'typo'"):
        paper._build(paper.PaperClaims, {**{f: 1.0 for f in paper.PaperClaims.__dataclass_fields__}, "typo": 1.0},
                     "claims")


def test_paper_data_names_our_methods_and_the_runs_figures_draw():
    # Which of our methods each table reproduces, and against which paper row, is data: the report names no method.
    assert dict(paper.TABLE1_OURS) == {
        "darts1": "DARTS (1st)", "darts2": "DARTS (2nd)", "gdas": "GDAS", "setn": "SETN", "dsnas": "DSNAS",
        "enas": "ENAS", "isdarts": "IS-DARTS", "lambda_darts": None, "lambda_darts_exact": None,
        "pcdarts": "PC-DARTS", "darts_minus": "DARTS-", "snas": None, "fairdarts": None, "sdarts_rs": None,
        "sdarts_adv": None, "drnas": None, "beta_darts": None, "sgas": None, "darts_pt": None}
    # Every NB201 method of the table has a Table 1 row (its paper row, or none to judge against).
    assert set(paper.TABLE1_OURS) == {m for m, spec in METHODS.items() if "nb201" in spec.spaces} - {"idarts", "sdarts"}
    assert dict(paper.TABLE2_OURS) == {
        "isdarts": "IS-DARTS", "darts1": "DARTS (1st)", "darts2": "DARTS (2nd)", "gdas": "GDAS", "pcdarts": "PC-DARTS",
        "snas": "SNAS", "sgas": "SGAS", "pdarts": "P-DARTS", "fairdarts": "FairDARTS", "sdarts_adv": "SDARTS-ADV",
        "darts_minus": "DARTS-"}
    assert dict(paper.TABLE3_OURS) == {"isdarts": "IS-DARTS (C)", "darts2": "DARTS (C)", "gdas": "GDAS (C)",
                                       "pcdarts": None, "snas": "SNAS (C)", "sgas": "SGAS (C)", "pdarts": "P-DARTS (C)",
                                       "sdarts_adv": "SDARTS-ADV (C)", "fairdarts": None, "darts_minus": None}
    assert paper.FIGURES.nb201_alpha_vs_iim == ("nb201/darts1", "nb201/isdarts")
    data = {"table1": {"ours": {"isdarts": "IS-DARTS", "lambda_darts": None}}}
    assert dict(paper._ours(data, "table1", paper.TABLE1, "method")) == data["table1"]["ours"]
    with pytest.raises(ReportError, match=r"table1\.ours: unknown method 'nosuch'; expected one of isdarts, "):
        paper._ours({"table1": {"ours": {"nosuch": "ENAS"}}}, "table1", paper.TABLE1, "method")
    with pytest.raises(ReportError, match=r"table1\.ours\.isdarts: 'IS-DARTS \(C\)' is not a row of table1"):
        paper._ours({"table1": {"ours": {"isdarts": "IS-DARTS (C)"}}}, "table1", paper.TABLE1, "method")
    with pytest.raises(ReportError, match=r"table1: key 'ours' must be dict"):
        paper._ours({"table1": {}}, "table1", paper.TABLE1, "method")
    with pytest.raises(ReportError, match=r"figures\.nb201_iim_over_epochs: 'nb201/nosuch' is not a run folder"):
        paper.FigureRuns("nb201/nosuch", "darts/search/isdarts", ("nb201/darts1", "nb201/isdarts"))


def test_paper_rows_rendered_in_markdown(tmp_path, bench):
    md = build_table1([], bench).markdown
    assert "| paper | ENAS | paper | – | 3.70 GPU-hours (RTX 3090) † | 37.51±3.19 | 53.89±0.58 |" in md
    # ENAS, GDAS and SETN were copied from the NB201 paper: marked beside their cost, and said so.
    assert "| paper | GDAS | paper | – | 8.70 GPU-hours (RTX 3090) † |" in md
    assert "| paper | DARTS (1st) | paper | – | 3.20 GPU-hours (RTX 3090) |" in md
    assert "† The paper's ENAS, GDAS, SETN rows, values and costs, match the NAS-Bench-201" in md
    assert "| paper | DSNAS | paper | – | – | 89.66±0.29 |" in md
    assert "| paper | IS-DARTS | paper | – | 2.00 GPU-hours (RTX 3090) | 91.55±0.00 | 94.36±0.00 |" in md


# ---------------------------------------------------------------- statistics


def test_mean_and_sample_std_over_seeds(tmp_path, bench):
    archs = [OPTIMUM_ARCH, GOOD_ARCH, OTHER_ARCH]
    hours = (0.1, 0.2, 0.6)
    runs = [_run(bench, seed, arch, hours=h) for seed, (arch, h) in enumerate(zip(archs, hours, strict=True))]
    report = build_table1([_write(tmp_path, "isdarts", _result("isdarts", runs))], bench)
    row = _row(report, "isdarts")
    assert row.seeds == (0, 1, 2) and len(row.runs) == 3
    assert row.cost_hours == pytest.approx(0.3) and row.cost_unit == "CPU-hours"
    for key in ACCURACY_KEYS:
        values = [bench.lookup(a).accuracies()[key] for a in archs]
        cell = row.cells[key].summary
        assert cell.mean == pytest.approx(np.mean(values))
        assert cell.std == pytest.approx(np.std(values, ddof=1))
        assert cell.std == pytest.approx(statistics.stdev(values))


def test_single_run_says_n1(tmp_path, bench):
    report = build_table1([_write(tmp_path, "d", _result("darts1", [_run(bench, 0, ALL_SKIP_ARCH)]))], bench)
    row = _row(report, "darts1")
    assert row.cells["cifar10_test"].summary.std is None
    assert "54.30±0.00 (n=1) ~" in report.markdown


# ---------------------------------------------------------------- verdicts


def test_paper_profile_within_and_outside_tolerance(tmp_path, bench):
    runs = [_run(bench, s, GOOD_ARCH, unit="GPU-hours") for s in range(4)]
    report = build_table1([_write(tmp_path, "isdarts", _result("isdarts", runs, paper_settings=True))], bench)
    cells = _row(report, "isdarts").cells
    # GOOD_ARCH: C10 test 93.66 vs paper 94.36 (−0.70), C100 test 70.29 vs 73.51 (−3.22).
    assert cells["cifar10_test"].verdict.status == "pass"
    assert cells["cifar10_test"].verdict.text == "within ±1.0 of paper"
    assert cells["cifar100_test"].verdict.status == "fail"
    assert cells["cifar100_test"].verdict.text == "differs by -3.22 (outside ±1.0)"
    md = report.markdown
    assert "93.66±0.00 ✓" in md and "70.29±0.00 ✗" in md
    assert "- IS-DARTS, C100 test: differs by -3.22 (outside ±1.0)" in md
    assert "not paper-scale" not in md  # no quick rows, so no warning
    assert "| ours | IS-DARTS | paper | 4 | 0.05 GPU-hours |" in md


def test_optimum_passes_everywhere(tmp_path, bench):
    runs = [_run(bench, s, OPTIMUM_ARCH, unit="GPU-hours") for s in range(2)]
    report = build_table1([_write(tmp_path, "i", _result("isdarts", runs, paper_settings=True))], bench)
    assert all(c.verdict.status == "pass" for c in _row(report, "isdarts").cells.values())


def test_quick_profile_is_never_a_pass(tmp_path, bench):
    runs = [_run(bench, s, OPTIMUM_ARCH) for s in range(2)]  # numbers match the paper exactly
    report = build_table1([_write(tmp_path, "i", _result("isdarts", runs))], bench)
    for cell in _row(report, "isdarts").cells.values():
        assert cell.verdict.status == "not_comparable"
        assert cell.verdict.text == "not comparable (quick profile)"
    md = report.markdown
    assert "**The reproduced numbers for IS-DARTS come from the quick profile: they are not paper-scale" in md
    assert "0.05 CPU-hours" in md  # CPU time stays CPU time


def test_lambda_darts_has_no_paper_number(tmp_path, bench):
    runs = [_run(bench, 0, OPTIMUM_ARCH)]
    report = build_table1([_write(tmp_path, "l", _result("lambda_darts", runs, paper_settings=True))], bench)
    assert {c.verdict.text for c in _row(report, "lambda_darts").cells.values()} == {"no paper number"}


def test_judge_boundaries():
    assert judge(95.36, 94.36, 1.0, comparable=True).status == "pass"
    assert judge(95.37, 94.36, 1.0, comparable=True).text == "differs by +1.01 (outside ±1.0)"
    assert judge(90.0, 94.36, 1.0, comparable=False, profile="smoke").text == "not comparable (smoke profile)"
    assert judge(90.0, None, 1.0, comparable=True).status == "no_paper"
    assert TOLERANCE == 1.0


# ---------------------------------------------------------------- reference rows


def test_reference_rows_match_the_benchmark(tmp_path, bench):
    report = build_table1([], bench)
    skip, best = references(bench).values()
    assert skip == bench.lookup(ALL_SKIP_ARCH).accuracies()
    assert fmt_num(skip["cifar10_test"]) == "54.30"
    assert fmt_num(best["cifar100_test"]) == "73.51"
    assert best == {k: max(getattr(r, k) for r in bench) for k in ACCURACY_KEYS}
    md = report.markdown
    assert "| reference | all-skip cell (DARTS collapse) | NB201 table | – | – | 39.77 | 54.30 |" in md


# ---------------------------------------------------------------- output files


def _three_files(tmp_path, bench):
    return [
        _write(tmp_path, "isdarts", _result("isdarts", [_run(bench, s, a) for s, a in
                                                        ((0, OPTIMUM_ARCH), (1, GOOD_ARCH))])),
        _write(tmp_path, "darts1", _result("darts1", [_run(bench, 0, ALL_SKIP_ARCH)])),
        _write(tmp_path, "lambda", _result("lambda_darts", [_run(bench, 3, OTHER_ARCH)])),
    ]


def test_output_is_deterministic(tmp_path, bench):
    files = _three_files(tmp_path, bench)
    md1, csv1 = write_table(build_table1(files, bench), tmp_path / "a")
    md2, csv2 = write_table(build_table1(list(reversed(files)), bench), tmp_path / "b")
    assert md1.read_bytes() == md2.read_bytes()
    assert csv1.read_bytes() == csv2.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["table1.csv", "table1.md"]  # no temp left
    md = md1.read_text(encoding="utf-8")
    # Rows in method order whatever the input order.
    assert md.index("| ours | DARTS (1st)") < md.index("| ours | IS-DARTS") < md.index("| ours | Λ-DARTS")


def test_csv_parses_with_expected_columns(tmp_path, bench):
    report = build_table1(_three_files(tmp_path, bench), bench)
    _, csv_path = write_table(report, tmp_path / "out")
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert tuple(rows[0].keys()) == csv_header(COLUMNS)
    assert csv_header(COLUMNS)[:6] == ("source", "method", "profile", "n_runs", "cost", "cost_unit")
    assert [r["source"] for r in rows] == ["paper"] * 9 + ["ours"] * 3 + ["reference"] * 2
    enas = rows[0]
    assert (enas["method"], enas["cost"], enas["cifar10_valid_mean"], enas["cifar10_valid_std"]) == (
        "ENAS", "3.7", "37.51", "3.19")
    ours = {r["method"]: r for r in rows if r["source"] == "ours"}
    assert ours["IS-DARTS"]["n_runs"] == "2" and ours["IS-DARTS"]["cost_unit"] == "CPU-hours"
    assert ours["IS-DARTS"]["cifar10_test_verdict"] == "not comparable (quick profile)"
    assert ours["DARTS (1st)"]["cifar10_test_std"] == ""  # n=1: no sample std
    assert ours["Λ-DARTS"]["cifar10_test_verdict"] == "no paper number"
    ref = rows[-1]
    assert float(ref["cifar100_test_mean"]) == pytest.approx(73.5133)


# ---------------------------------------------------------------- bad input


def test_missing_file(tmp_path, bench):
    missing = tmp_path / "nope.json"
    with pytest.raises(ReportError, match="nope.json.*not found"):
        build_table1([missing], bench)


def test_malformed_json(tmp_path, bench):
    path = _write(tmp_path, "broken", "{not json")
    with pytest.raises(ReportError, match="broken.json.*malformed JSON"):
        build_table1([path], bench)


def test_missing_accuracy_key_names_file_and_key(tmp_path, bench):
    data = _result("isdarts", [_run(bench, 0, OPTIMUM_ARCH), _run(bench, 1, GOOD_ARCH)])
    del data["runs"][1]["accuracies"]["cifar100_test"]
    path = _write(tmp_path, "isd", data)
    with pytest.raises(ReportError, match=r"isd\.json: runs\[1\]\.accuracies: missing key 'cifar100_test'"):
        build_table1([path], bench)


def test_unknown_method(tmp_path, bench):
    data = _result("isdarts", [_run(bench, 0, OPTIMUM_ARCH)]) | {"method": "nosuch"}
    with pytest.raises(ReportError, match=r"m\.json: key 'method' is 'nosuch'; expected 'isdarts' or"):
        build_table1([_write(tmp_path, "m", data)], bench)
    # A method the pipeline runs, but whose row lives in Table A.1, not Table 1.
    data = _result("isdarts", [_run(bench, 0, OPTIMUM_ARCH)]) | {"method": "idarts"}
    with pytest.raises(ReportError, match=r"i\.json: key 'method' has unknown method 'idarts'; expected one of"):
        build_table1([_write(tmp_path, "i", data)], bench)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("paper_settings"), "missing key 'paper_settings'"),
    (lambda d: d.update(paper_settings="yes"), "key 'paper_settings' must be bool"),
    (lambda d: d.update(space="darts"), "key 'space' is 'darts'"),
    (lambda d: d.update(runs=[]), "key 'runs' is empty"),
    (lambda d: d["runs"][0]["accuracies"].update(cifar10_test="93"),
     "runs[0].accuracies: key 'cifar10_test' must be int or float"),
    (lambda d: d["runs"].append(dict(d["runs"][0])), "key 'seed' repeats"),
    (lambda d: d["runs"].append(dict(d["runs"][0], seed=9, cost_unit="GPU-hours")),
     "key 'cost_unit' differs"),
])
def test_bad_fields(tmp_path, bench, mutate, message):
    data = _result("isdarts", [_run(bench, 0, OPTIMUM_ARCH)])
    mutate(data)
    with pytest.raises(ReportError, match="bad.json") as info:
        build_table1([_write(tmp_path, "bad", data)], bench)
    assert message in str(info.value)


def test_duplicate_method(tmp_path, bench):
    a = _write(tmp_path, "a", _result("isdarts", [_run(bench, 0, OPTIMUM_ARCH)]))
    b = _write(tmp_path, "b", _result("isdarts", [_run(bench, 1, OPTIMUM_ARCH)]))
    with pytest.raises(ReportError, match="b.json: key 'method' 'isdarts' already read from .*a.json"):
        build_table1([a, b], bench)


# ---------------------------------------------------------------- helpers


def test_format_helpers():
    assert fmt_mean_std(91.553, 0.0) == "91.55±0.00"
    assert fmt_mean_std(3.46, None) == "3.46"
    assert fmt_mean_std(None, None) == "–"
    assert fmt_mean_std(54.2967, None, n=1) == "54.30±0.00 (n=1)"
    assert fmt_num(-0.001) == "0.00"
    table = markdown_table(["a", "b"], [["|x|", "1"]], ["l", "r"])
    assert table == "| a | b |\n|---|---:|\n| \\|x\\| | 1 |\n"
    with pytest.raises(ValueError):
        markdown_table(["a"], [["1", "2"]])
