"""Tests for the DARTS-space tables (isdarts.report.table2, table3) and the build_all entry point."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest

from isdarts.report import ReportError, build_all, build_table2, build_table3, table2, table3, write_table
from isdarts.report.render import cost, csv_header, days_unit

GENOTYPE = "Genotype(normal=[('dua_sepc_3x3', 0)], normal_concat=[2], reduce=[('max_pool_3x3', 1)], reduce_concat=[2])"


# ---------------------------------------------------------------- fixture builders (the CONTRACTS schemas)


def _common(method: str, seed: int, profile: str, search_hours: float | None, unit: str | None) -> dict:
    paper = profile == "paper"
    return {"space": "darts", "method": method, "seed": seed, "profile": profile, "paper_settings": paper,
            "paper_mismatches": [] if paper else ["epochs=3 (paper: 600)", "C=8 (paper: 36)"],
            "genotype": GENOTYPE, "search_hours": search_hours, "search_cost_unit": unit}


def retrain_metrics(method: str, seed: int, final_err: float, best_err: float, params_m: float = 3.5,
                    profile: str = "quick", search_hours: float | None = 0.024,
                    unit: str | None = "CPU-hours") -> dict:
    """A runs/darts/retrain/<method>/seed_<s>/metrics.json as the retrain stage writes it."""
    return {
        **_common(method, seed, profile, search_hours, unit),
        "epochs": 3, "params_m": params_m, "final_test_acc": 100 - final_err, "final_test_error": final_err,
        "final_train_loss": 1.2, "best_test_acc": 100 - best_err, "best_test_error": best_err, "best_epoch": 2,
        "images_per_s_mean": 900.0, "train_seconds": 60.0, "cost_hours": 60 / 3600, "cost_unit": "CPU-hours",
        "device_name": "cpu (2 threads)", "config": {"epochs": 3}, "genotype_file": "runs/x/genotype.json",
        "image_size": 32, "train_images": 500, "test_images": 100,
    }


def imagenet_metrics(method: str, seed: int, top1: float, top5: float, tiny: bool = True, profile: str = "quick",
                     search_hours: float | None = 48.0, unit: str | None = "GPU-hours (NVIDIA H100)") -> dict:
    """A runs/darts/imagenet/<method>/seed_<s>/metrics.json as the ImageNet stage writes it."""
    return {
        **_common(method, seed, profile, search_hours, unit),
        "top1_error": top1, "top5_error": top5, "params_m": 4.7, "madds_m": 574.2, "madds_input": 224,
        "epochs": 2, "world_size": 1, "bn": "local", "config": {"image_size": 64}, "train_seconds": 120.0,
        "cost_hours": 120 / 3600, "cost_unit": "CPU-hours", "device_name": "cpu (2 threads)",
        "genotype_file": "runs/darts/search/isdarts/seed_0/genotype.json",
        "data": {"root": "data/tiny", "split_totals": {"train": 200, "val": 40}, "classes": 10, "tiny": tiny},
    }


def put(root: Path, rel: str, data: dict | str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def nb201_result(method: str = "isdarts") -> dict:
    """A minimal results/nb201_<method>.json (Table 1 needs one to exist)."""
    accs = {"cifar10_valid": 90.0, "cifar10_test": 93.5, "cifar100_valid": 70.0, "cifar100_test": 70.5,
            "imagenet16_valid": 44.0, "imagenet16_test": 44.5}
    run = {"seed": 0, "arch_str": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
           "nor_conv_3x3~1|nor_conv_3x3~2|", "accuracies": accs, "search_hours": 0.02, "cost_unit": "CPU-hours",
           "device_name": "cpu"}
    return {"space": "nb201", "method": method, "profile": "quick", "paper_settings": False,
            "profile_note": "quick profile note", "runs": [run]}


@pytest.fixture
def retrain_dir(tmp_path: Path) -> Path:
    root = tmp_path / "runs" / "darts" / "retrain"
    put(root, "isdarts/seed_1/metrics.json", retrain_metrics("isdarts", 1, 9.0, 8.5, params_m=3.9, search_hours=0.048))
    put(root, "isdarts/seed_0/metrics.json", retrain_metrics("isdarts", 0, 8.0, 7.5, params_m=3.7, search_hours=0.024))
    put(root, "darts2/seed_0/metrics.json", retrain_metrics("darts2", 0, 7.0, 6.0, search_hours=None, unit=None))
    return root


def _ours(report, method):
    return next(r for r in report.reproduced if r.method == method)


# ---------------------------------------------------------------- Table 2


def test_table2_mean_std_params_and_cpu_days(retrain_dir):
    report = build_table2(retrain_dir)
    row = _ours(report, "isdarts")
    assert row.seeds == (0, 1)
    assert row.test_error.summary.mean == pytest.approx(8.5)
    assert row.test_error.summary.std == pytest.approx(statistics.stdev([8.0, 9.0]))
    assert row.best_error.summary.mean == pytest.approx(8.0)
    assert row.params_m.mean == pytest.approx(3.8)
    assert row.cost_days == pytest.approx(0.036 / 24) and row.cost_unit == "CPU-days"
    assert row.paper is not None and row.paper.architecture == "IS-DARTS"
    assert row.test_error.verdict.text == "not comparable (quick profile)"
    md = report.markdown
    assert "| ours | IS-DARTS | quick | 2 | 8.50±0.71 ~ | 8.00±0.71 ~ | 3.80±0.14 | 0.0015 CPU-days | gradient |" in md
    assert "| paper | IS-DARTS | paper | – | 2.56±0.04 | – | 4.25±0.22 | 0.42 GPU-days | gradient |" in md
    # Paper rows first, ours after, in method order.
    assert md.index("| paper | IS-DARTS") < md.index("| ours | IS-DARTS") < md.index("| ours | DARTS (2nd)")
    assert "Differs from the paper in: epochs=3 (paper: 600); C=8 (paper: 36)." in md
    assert "**The reproduced numbers for IS-DARTS, DARTS (2nd) come from the quick profile" in md


def test_table2_single_run_and_missing_search_cost(retrain_dir):
    row = _ours(build_table2(retrain_dir), "darts2")
    assert row.cost_days is None and row.test_error.summary.std is None
    md = build_table2(retrain_dir).markdown
    assert "| ours | DARTS (2nd) | quick | 1 | 7.00±0.00 (n=1) ~ | 6.00±0.00 (n=1) ~ | 3.50±0.00 (n=1) | – |" in md
    assert "search cost not recorded for every seed" in md


def test_table2_paper_profile_is_judged(tmp_path):
    root = tmp_path / "retrain"
    for seed, err in enumerate((2.6, 2.7)):
        put(root, f"isdarts/seed_{seed}/metrics.json",
            retrain_metrics("isdarts", seed, err, 2.4, profile="paper", search_hours=10.08, unit="GPU-hours (H100)"))
    row = _ours(build_table2(root), "isdarts")
    assert row.test_error.verdict.status == "pass"  # 2.65 vs 2.56
    assert row.cost_days == pytest.approx(0.42) and row.cost_unit == "GPU-days (H100)"
    assert "0.42 GPU-days (H100)" in build_table2(root).markdown


def test_custom_profile_is_never_a_pass(tmp_path):
    root = tmp_path / "retrain"
    data = retrain_metrics("isdarts", 0, 2.56, 2.56, profile="custom") | {"paper_settings": True}
    put(root, "isdarts/seed_0/metrics.json", data)
    assert _ours(build_table2(root), "isdarts").test_error.verdict.text == "not comparable (custom profile)"


def test_table2_csv(retrain_dir, tmp_path):
    _, csv_path = write_table(build_table2(retrain_dir), tmp_path / "out")
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == csv_header(table2.COLUMNS)
    assert [r["source"] for r in rows] == ["paper"] * 18 + ["ours"] * 2
    ours = rows[18]
    assert (ours["architecture"], ours["seeds"], ours["test_error_mean"], ours["cost_unit"]) == (
        "IS-DARTS", "0 1", "8.5", "CPU-days")
    assert float(ours["cost"]) == pytest.approx(0.0015)
    assert rows[17]["cost"] == "0.42" and rows[17]["cost_unit"] == "GPU-days"


def test_days_unit_and_cost_format():
    assert days_unit("GPU-hours (NVIDIA H100)") == "GPU-days (NVIDIA H100)"
    assert days_unit("CPU-hours") == "CPU-days"
    assert [cost(v, "CPU-days").md for v in (0.0015, 0.42, 1.23456)] == ["0.0015 CPU-days", "0.42 CPU-days",
                                                                        "1.23 CPU-days"]
    assert cost(None, None) == cost(None, None, "paper") and cost(None, None).md == "–"
    assert cost(1.23456, "CPU-days").csv == ("1.23456", "CPU-days") and cost(2000, "GPU-days", "paper").md == (
        "2000 GPU-days")


def test_table2_profiles_are_separate_rows(tmp_path):
    root = tmp_path / "retrain"
    put(root, "isdarts/seed_0/metrics.json", retrain_metrics("isdarts", 0, 8.0, 7.0, profile="quick"))
    put(root, "isdarts/seed_1/metrics.json", retrain_metrics("isdarts", 1, 3.0, 2.9, profile="smoke"))
    rows = build_table2(root).reproduced
    assert [(r.profile, r.seeds) for r in rows] == [("quick", (0,)), ("smoke", (1,))]


def test_unfinished_seed_is_left_out(retrain_dir):
    (retrain_dir / "isdarts" / "seed_7").mkdir()
    assert _ours(build_table2(retrain_dir), "isdarts").seeds == (0, 1)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("final_test_error"), "missing key 'final_test_error'"),
    (lambda d: d.update(params_m="3.5"), "key 'params_m' must be int or float"),
    (lambda d: d.update(space="nb201"), "key 'space' is 'nb201'"),
    (lambda d: d.update(method="darts1"), "key 'method' is 'darts1' but the file lies under 'isdarts'"),
    (lambda d: d.update(seed=4), "key 'seed' is 4 but the file lies under seed_0"),
    (lambda d: d.update(paper_mismatches="none"), "key 'paper_mismatches' must be list"),
])
def test_table2_bad_fields(tmp_path, mutate, message):
    data = retrain_metrics("isdarts", 0, 8.0, 7.0)
    mutate(data)
    put(tmp_path, "isdarts/seed_0/metrics.json", data)
    with pytest.raises(ReportError, match=r"seed_0[/\\]metrics\.json") as info:
        build_table2(tmp_path)
    assert message in str(info.value)


def test_table2_malformed_json(tmp_path):
    put(tmp_path, "isdarts/seed_0/metrics.json", "{oops")
    with pytest.raises(ReportError, match="metrics.json.*malformed JSON"):
        build_table2(tmp_path)


def test_table2_mixed_search_cost_units(tmp_path):
    put(tmp_path, "isdarts/seed_0/metrics.json", retrain_metrics("isdarts", 0, 8.0, 7.0, unit="CPU-hours"))
    put(tmp_path, "isdarts/seed_1/metrics.json", retrain_metrics("isdarts", 1, 8.0, 7.0, unit="GPU-hours"))
    with pytest.raises(ReportError, match="key 'search_cost_unit' differs"):
        build_table2(tmp_path)


# ---------------------------------------------------------------- Table 3


def test_table3_rows_madds_and_tiny_note(tmp_path):
    root = tmp_path / "imagenet"
    put(root, "isdarts/seed_0/metrics.json", imagenet_metrics("isdarts", 0, 80.0, 40.0))
    put(root, "isdarts/seed_2/metrics.json", imagenet_metrics("isdarts", 2, 82.0, 44.0))
    report = build_table3(root)
    row = _ours(report, "isdarts")
    assert row.label == "IS-DARTS (C)" and row.tiny and row.madds_input == 224
    assert row.top1_error.summary.mean == pytest.approx(81.0) and row.top5_error.summary.mean == pytest.approx(42.0)
    assert row.paper.architecture == "IS-DARTS (C)"
    assert row.cost_days == pytest.approx(2.0) and row.cost_unit == "GPU-days (NVIDIA H100)"
    md = report.markdown
    assert ("| ours | IS-DARTS (C) | quick, tiny data | 2 | 81.00±1.41 ~ | 42.00±2.83 ~ | 4.70±0.00 | 574.2±0.0 @224 "
            "| 2 GPU-days (NVIDIA H100) | gradient |") in md
    assert "MAdds counted at 224×224" in md
    assert "a tiny ImageFolder made from CIFAR, not ImageNet" in md
    assert "| paper | IS-DARTS (C) | paper | – | 24.10 | 7.10 | 6.40 | – | 0.42 GPU-days | gradient |" in md
    assert "| paper | ShuffleNet 2× | paper | – | 26.30 | – | 5.00 | – | – | manual |" in md


def test_table3_tiny_paper_profile_is_not_judged(tmp_path):
    put(tmp_path, "isdarts/seed_0/metrics.json", imagenet_metrics("isdarts", 0, 24.1, 7.1, tiny=True, profile="paper"))
    put(tmp_path, "darts2/seed_0/metrics.json", imagenet_metrics("darts2", 0, 24.1, 7.1, tiny=False, profile="paper"))
    report = build_table3(tmp_path)
    assert _ours(report, "isdarts").top1_error.verdict.status == "not_comparable"
    darts = _ours(report, "darts2")
    assert darts.paper.architecture == "DARTS (C)"
    assert darts.top1_error.verdict.status == "fail"  # 24.1 vs DARTS (C) 26.7
    assert darts.top5_error.verdict.text == "differs by -1.60 (outside ±1.0)"


def test_table3_missing_tiny_flag_and_csv(tmp_path):
    data = imagenet_metrics("isdarts", 0, 80.0, 40.0)
    put(tmp_path / "ok", "isdarts/seed_0/metrics.json", data)
    _, csv_path = write_table(build_table3(tmp_path / "ok"), tmp_path / "out")
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == csv_header(table3.COLUMNS) and len(rows) == 21
    assert (rows[-1]["tiny_data"], rows[-1]["madds_input"], rows[-1]["top1_error_mean"]) == ("true", "224", "80.0")
    del data["data"]["tiny"]
    put(tmp_path / "bad", "isdarts/seed_0/metrics.json", data)
    with pytest.raises(ReportError, match=r"metrics\.json: data: missing key 'tiny'"):
        build_table3(tmp_path / "bad")


# ---------------------------------------------------------------- build_all


def test_build_all_needs_a_table1_result(tmp_path):
    with pytest.raises(ReportError, match=r"results: no NB201 results .*run `dvc repro`"):
        build_all(tmp_path / "results", tmp_path / "runs", tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_build_all_without_runs_writes_paper_rows(tmp_path):
    put(tmp_path, "results/nb201_isdarts.json", nb201_result())
    runs = tmp_path / "runs"
    written = build_all(tmp_path / "results", runs, tmp_path / "reports")
    names = [p.name for p in written]
    assert names == ["table1.md", "table1.csv", "table2.md", "table2.csv", "table3.md", "table3.csv",
                     "table_a1.md", "table_a1.csv", "table_a2.md", "table_a2.csv", "table_robust.md",
                     "table_robust.csv", "study.md", "study.csv",  # no figure
                     "nb201_search.csv", "nb201_op_weights.csv", "darts_search.csv", "darts_retrain.csv"]
    plots = tmp_path / "reports" / "plots"  # the DVC plot tables: a header and no rows
    assert (plots / "nb201_search.csv").read_text().count("\n") == 1
    assert (tmp_path / "reports" / "figures").is_dir()
    for stem, sub in (("table2", "darts/retrain"), ("table3", "darts/imagenet"), ("table_a2", "darts/sweep")):
        md = (tmp_path / "reports" / f"{stem}.md").read_text(encoding="utf-8")
        assert f"No reproduced runs found under `{runs / sub}`; run `dvc repro`" in md
        assert "| paper |" in md or "(paper)" in md


def test_build_all_rebuild_is_byte_identical(tmp_path, retrain_dir):
    put(tmp_path, "results/nb201_isdarts.json", nb201_result())
    put(tmp_path, "runs/darts/imagenet/isdarts/seed_0/metrics.json", imagenet_metrics("isdarts", 0, 80.0, 40.0))
    args = (tmp_path / "results", tmp_path / "runs")
    first = {p.name: p.read_bytes() for p in build_all(*args, tmp_path / "reports")}
    second = {p.name: p.read_bytes() for p in build_all(*args, tmp_path / "reports")}
    assert first == second
    assert "| ours | IS-DARTS | quick | 2 |" in first["table2.md"].decode()
    assert "| ours | IS-DARTS (C) | quick, tiny data | 1 |" in first["table3.md"].decode()
