"""Tests for the appendix tables (isdarts.report.table_a1, table_a2): A.1 on NB201 and A.2 over shrink rates."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest

from isdarts.benchmark.nb201 import ACCURACY_KEYS
from isdarts.report import ReportError, build_table_a1, build_table_a2, table_a1, table_a2, write_table
from isdarts.report.render import csv_header
from isdarts.report.table_a2 import RATE_NAMES

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
PAPER_ISDARTS = (91.55, 94.36, 73.49, 73.51, 46.37, 46.34)

# (rate_name, rate, label, steps, interval) as the sweep stage writes them.
SWEEP = (("r1", 1.0, "1 (I-DARTS)", 1, None), ("r0_5", 0.5, "0.5", 2, 18), ("r0_25", 0.25, "0.25", 4, 6),
         ("r0_143", 1 / 7, "0.143", 7, 3), ("r0_1", 0.1, "0.1", 10, 2), ("r0_05", 0.05, "0.05", 20, 1))


# ---------------------------------------------------------------- fixture builders (the CONTRACTS schemas)


def nb201_run(seed: int, accs: tuple[float, ...], hours: float = 0.05) -> dict:
    return {"seed": seed, "arch_str": ARCH, "accuracies": dict(zip(ACCURACY_KEYS, accs, strict=True)),
            "search_hours": hours, "cost_unit": "CPU-hours", "device_name": "cpu", "skip_count": 0,
            "param_free_count": 0, "paper_settings": False, "paper_mismatches": []}


def nb201_result(method: str, runs: list[dict], profile: str = "quick") -> dict:
    """A results/nb201_<method>.json as the lookup stage writes it."""
    return {"space": "nb201", "method": method, "method_label": method, "profile": profile,
            "paper_settings": profile == "paper", "profile_note": f"{profile} profile: small net", "runs": runs}


def sweep_metrics(rate_name: str, final_err: float, best_err: float, profile: str = "quick") -> dict:
    """A runs/darts/sweep/<rate_name>/retrain/metrics.json (retrain schema plus the sweep fields)."""
    _, rate, label, steps, interval = next(s for s in SWEEP if s[0] == rate_name)
    paper = profile == "paper"
    return {
        "space": "darts", "method": "isdarts", "seed": 0, "profile": profile, "paper_settings": paper,
        "paper_mismatches": [] if paper else ["epochs=2 (paper: 600)"], "genotype": f"Genotype({rate_name})",
        "search_hours": 0.24, "search_cost_unit": "CPU-hours", "epochs": 2, "params_m": 3.3,
        "final_test_acc": 100 - final_err, "final_test_error": final_err, "final_train_loss": 1.0,
        "best_test_acc": 100 - best_err,
        "best_test_error": best_err, "best_epoch": 1, "images_per_s_mean": 1.0, "train_seconds": 1.0,
        "cost_hours": 1 / 3600, "cost_unit": "CPU-hours", "device_name": "cpu", "config": {},
        "genotype_file": "g.json", "image_size": 32, "train_images": 100, "test_images": 50,
        "rate": rate, "rate_label": label, "rate_name": rate_name, "steps": steps, "interval": interval,
        "anchor": "last",
    }


def put(root: Path, rel: str, data: dict | str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


# ---------------------------------------------------------------- Table A.1


@pytest.fixture
def results(tmp_path: Path) -> Path:
    put(tmp_path, "nb201_isdarts.json", nb201_result("isdarts", [nb201_run(0, PAPER_ISDARTS)]))
    put(tmp_path, "nb201_sdarts.json", nb201_result("sdarts", [
        nb201_run(1, (60.0, 61.0, 30.0, 31.0, 15.0, 16.0), hours=0.1),
        nb201_run(0, (62.0, 63.0, 32.0, 33.0, 17.0, 18.0), hours=0.3),
    ]))
    put(tmp_path, "nb201_darts1.json", nb201_result("darts1", [nb201_run(0, PAPER_ISDARTS)]))  # not A.1's
    return tmp_path


def test_a1_rows_beside_paper(results):
    report = build_table_a1(results)
    assert [r.method for r in report.reproduced] == ["isdarts", "sdarts"]
    sdarts = report.reproduced[1]
    assert sdarts.seeds == (1, 0) and sdarts.cost_hours == pytest.approx(0.2)
    cell = sdarts.cells["cifar10_test"]
    assert cell.summary.mean == pytest.approx(62.0) and cell.summary.std == pytest.approx(statistics.stdev([61, 63]))
    assert cell.paper == 70.92 and cell.verdict.text == "not comparable (quick profile)"
    md = report.markdown
    assert "| paper | S-DARTS | paper | – | – | 68.29 | 70.92 | 38.57 | 38.97 | 18.87 | 18.41 |" in md
    assert "| ours | S-DARTS | quick | 2 | 0.20 CPU-hours | 61.00±1.41 ~ | 62.00±1.41 ~ |" in md
    assert "| ours | IS-DARTS | quick | 1 | 0.05 CPU-hours | 91.55±0.00 (n=1) ~ |" in md
    assert "not run: I-DARTS" in md and "nb201_idarts.json" in md
    assert "quick profile: small net" in md
    assert "DARTS (1st)" not in md


def test_a1_paper_profile_judged(tmp_path):
    accs = (90.0, 93.0, 70.0, 69.0, 43.0, 43.0)  # I-DARTS paper: 90.59 93.31 70.05 69.83 43.78 43.84
    put(tmp_path, "nb201_idarts.json", nb201_result("idarts", [nb201_run(0, accs)], profile="paper"))
    cells = build_table_a1(tmp_path).reproduced[0].cells
    assert {k: c.verdict.status for k, c in cells.items()} == {k: "pass" for k in ACCURACY_KEYS}
    put(tmp_path, "nb201_idarts.json", nb201_result("idarts", [nb201_run(0, (88.0, *accs[1:]))], profile="paper"))
    cells = build_table_a1(tmp_path).reproduced[0].cells
    assert cells["cifar10_valid"].verdict.text == "differs by -2.59 (outside ±1.0)"


def test_a1_csv_and_absent(results, tmp_path):
    _, csv_path = write_table(build_table_a1(results), tmp_path / "out")
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == csv_header(table_a1.COLUMNS)
    assert [(r["source"], r["method"]) for r in rows] == [
        ("paper", "IS-DARTS"), ("paper", "I-DARTS"), ("paper", "S-DARTS"), ("ours", "IS-DARTS"), ("ours", "S-DARTS")]
    assert rows[-1]["cifar10_test_mean"] == "62.0" and rows[-1]["seeds"] == "1 0"
    md = build_table_a1(tmp_path / "empty").markdown
    assert "No reproduced runs found under" in md and "run `dvc repro`" in md
    assert "| paper | IS-DARTS | paper | – | – | 91.55 | 94.36 |" in md


def test_a1_bad_input(tmp_path):
    put(tmp_path, "nb201_idarts.json", "[1, 2")
    with pytest.raises(ReportError, match="nb201_idarts.json.*malformed JSON"):
        build_table_a1(tmp_path)
    data = nb201_result("idarts", [nb201_run(0, PAPER_ISDARTS)])
    del data["runs"][0]["accuracies"]["imagenet16_test"]
    put(tmp_path, "nb201_idarts.json", data)
    with pytest.raises(ReportError, match=r"nb201_idarts\.json: runs\[0\]\.accuracies: missing key 'imagenet16_test'"):
        build_table_a1(tmp_path)
    put(tmp_path, "nb201_idarts.json", nb201_result("sdarts", [nb201_run(0, PAPER_ISDARTS)]))
    with pytest.raises(ReportError, match="nb201_idarts.json: key 'method' is 'sdarts'"):
        build_table_a1(tmp_path)


# ---------------------------------------------------------------- Table A.2


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    # Written out of order, and one rate (0.1) not run at all.
    for name, err in (("r0_05", 3.4), ("r1", 3.1), ("r0_25", 2.6), ("r0_143", 2.7), ("r0_5", 3.0)):
        put(root, f"{name}/retrain/metrics.json", sweep_metrics(name, err, err - 0.2))
    (root / "r0_1" / "search").mkdir(parents=True)  # search started, retrain not run
    return root


def test_a2_ordered_by_rate(sweep):
    report = build_table_a2(sweep)
    assert [r.rate_name for r in report.reproduced] == ["r1", "r0_5", "r0_25", "r0_143", "r0_05"]
    assert [r.paper.label for r in report.reproduced] == ["1 (I-DARTS)", "0.5", "0.25", "0.143", "0.05"]
    md = report.markdown
    assert "| shrink rate | 1 (I-DARTS) | 0.5 | 0.25 | 0.143 | 0.1 | 0.05 |" in md
    assert "| steps S (paper) | 1 | 2 | 4 | 7 | 10 | 20 |" in md
    assert "| interval epoch (paper) | / | 18 | 6 | 3 | 2 | 1 |" in md
    assert "| test error % (paper) | 2.98 | 2.87 | 2.51 | 2.56 | 2.58 | 2.95 |" in md
    assert "| steps S (ours) | 1 | 2 | 4 | 7 | – | 20 |" in md
    assert "| interval epoch (ours) | / | 18 | 6 | 3 | – | 1 |" in md
    assert "| test error % (ours, final epoch) | 3.10 ~ | 3.00 ~ | 2.60 ~ | 2.70 ~ | – | 3.40 ~ |" in md
    assert "| test error % (ours, best epoch) | 2.90 ~ | 2.80 ~ | 2.40 ~ | 2.50 ~ | – | 3.20 ~ |" in md
    assert "| profile (ours) | quick | quick | quick | quick | – | quick |" in md
    assert "| search cost (ours) | 0.01 CPU-days |" in md
    assert "not run: rate 0.1; run `dvc repro`" in md


def test_a2_paper_profile_judged(tmp_path):
    put(tmp_path, "r0_25/retrain/metrics.json", sweep_metrics("r0_25", 2.6, 2.4, profile="paper"))
    put(tmp_path, "r0_05/retrain/metrics.json", sweep_metrics("r0_05", 2.5, 2.4, profile="paper"))
    report = build_table_a2(tmp_path)
    by_rate = {r.rate_name: r for r in report.reproduced}
    assert by_rate["r0_25"].test_error.verdict.status == "pass"  # 2.60 vs 2.51
    assert by_rate["r0_05"].test_error.verdict.text == "differs by -0.45 (outside ±0.3)"
    assert "- rate 0.05, final error: differs by -0.45 (outside ±0.3)" in report.markdown


def test_a2_csv(sweep, tmp_path):
    _, csv_path = write_table(build_table_a2(sweep), tmp_path / "out")
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == csv_header(table_a2.COLUMNS)
    assert [r["rate_label"] for r in rows if r["source"] == "paper"] == ["1 (I-DARTS)", "0.5", "0.25", "0.143",
                                                                         "0.1", "0.05"]
    ours = [r for r in rows if r["source"] == "ours"]
    assert [r["rate_name"] for r in ours] == ["r1", "r0_5", "r0_25", "r0_143", "r0_05"]
    assert (ours[0]["interval"], ours[0]["test_error"], ours[0]["cost"], ours[0]["cost_unit"]) == (
        "", "3.1", "0.01", "CPU-days")


def test_a2_absent(tmp_path):
    md = build_table_a2(tmp_path / "nothing").markdown
    assert f"No reproduced runs found under `{tmp_path / 'nothing'}`; run `dvc repro`" in md
    assert "| test error % (paper) | 2.98 | 2.87 |" in md


@pytest.mark.parametrize("name, mutate, message", [
    ("r0_5", lambda d: d.update(rate=0.25), "key 'rate' is 0.25 but the folder 'r0_5' is rate 0.5"),
    ("r0_5", lambda d: d.pop("steps"), "missing key 'steps'"),
    ("r0_5", lambda d: d.update(interval="18"), "key 'interval' must be int or NoneType"),
    ("r0_3", lambda d: None, "unknown shrink-rate folder 'r0_3'"),
])
def test_a2_bad_input(tmp_path, name, mutate, message):
    data = sweep_metrics("r0_5", 3.0, 2.9)
    mutate(data)
    put(tmp_path, f"{name}/retrain/metrics.json", data)
    with pytest.raises(ReportError, match=r"retrain[/\\]metrics\.json") as info:
        build_table_a2(tmp_path)
    assert message in str(info.value)


def test_rate_names_cover_the_paper():
    assert list(RATE_NAMES.values()) == [1.0, 0.5, 0.25, 0.143, 0.1, 0.05]
