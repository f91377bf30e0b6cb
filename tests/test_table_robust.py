"""The robust-spaces table (isdarts/report/table_robust.py) from retrain folders laid out as the pipeline writes them:
our rows beside the published errors, the parameter-free count of each normal cell, and the records it refuses."""

import json
from pathlib import Path

import pytest

from isdarts.errors import ReportError
from isdarts.report.table_robust import ROBUST_SPACES, build_table_robust, paper_numbers

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = json.loads((ROOT / "runs/darts/retrain/isdarts/seed_0/metrics.json").read_text())
# Normal cell: skip, skip | skip, max pool | sep, sep | noise, skip -> 6 parameter-free inputs of 8.
NORMAL = [[["skip_connect", 0], ["skip_connect", 1]], [["skip_connect", 0], ["max_pool_3x3", 2]],
          [["sep_conv_3x3", 1], ["sep_conv_3x3", 3]], [["noise", 0], ["skip_connect", 4]]]
REDUCE = [[["max_pool_3x3", 0], ["max_pool_3x3", 1]]] * 4


def write_run(root: Path, folder: str, space: str, method: str, seed: int, error: float, normal=NORMAL) -> None:
    search = root / "runs" / folder / "search" / method / f"seed_{seed}"
    search.mkdir(parents=True)
    (search / "genotype.json").write_text(json.dumps({
        "space": "darts", "method": method, "seed": seed, "normal": normal, "normal_concat": [2, 3, 4, 5],
        "reduce": REDUCE, "reduce_concat": [2, 3, 4, 5]}))
    retrain = root / "runs" / folder / "retrain" / method / f"seed_{seed}"
    retrain.mkdir(parents=True)
    (retrain / "metrics.json").write_text(json.dumps({
        **TEMPLATE, "space": space, "method": method, "seed": seed, "final_test_error": error,
        "final_test_acc": 100 - error, "genotype_file": f"runs/{folder}/search/{method}/seed_{seed}/genotype.json"}))


def test_rows_sit_beside_the_published_errors_with_their_param_free_counts(tmp_path):
    write_run(tmp_path, "s1", "s1", "darts1", 0, 30.0)
    write_run(tmp_path, "s1", "s1", "darts1", 1, 34.0)
    write_run(tmp_path, "s4-svhn", "s4", "isdarts", 0, 12.5)
    page = build_table_robust(tmp_path / "runs")
    lines = page.markdown.splitlines()
    ours = [line for line in lines if "| quick |" in line]
    assert len(ours) == 2
    s1 = next(line for line in ours if line.startswith("| S1 | CIFAR-10 | DARTS (1st)"))
    assert "| 0, 1 |" in s1 and "32.00±2.83" in s1 and "| 3.84 |" in s1 and "| 6.0/8 |" in s1
    s4 = next(line for line in ours if line.startswith("| S4 | SVHN | IS-DARTS"))
    assert "| n/a |" in s4 and "12.50" in s4 and "noise~0" in s4
    # The published DARTS row of S1 / CIFAR-10 is shown once, beside ours, not again on its own.
    assert sum(line.startswith("| S1 | CIFAR-10 | DARTS |") for line in lines) == 0
    assert sum(line.startswith("| S2 | CIFAR-10 | DARTS |") for line in lines) == 1
    csv_rows = page.csv.splitlines()
    assert csv_rows[0].startswith("space,dataset,method,profile,seeds")
    assert any(row.startswith("S1,CIFAR-10,DARTS (1st),quick,") for row in csv_rows)


def test_without_runs_the_page_shows_the_published_numbers_and_how_to_run(tmp_path):
    page = build_table_robust(tmp_path / "runs")
    _, _, errors = paper_numbers()
    assert "No reproduced runs found" in page.markdown and "`robust` section" in page.markdown
    assert sum("| published |" in line for line in page.markdown.splitlines()) == len(errors) == 26


def test_a_run_filed_under_another_space_is_refused(tmp_path):
    write_run(tmp_path, "s2", "s3", "darts1", 0, 20.0)
    with pytest.raises(ReportError, match="key 'space' is 's3' but the file lies under 's2'"):
        build_table_robust(tmp_path / "runs")


def test_a_missing_genotype_names_the_file(tmp_path):
    write_run(tmp_path, "s5", "s5", "darts1", 0, 20.0)
    (tmp_path / "runs/s5/search/darts1/seed_0/genotype.json").unlink()
    with pytest.raises(ReportError, match="genotype this retrain names is missing"):
        build_table_robust(tmp_path / "runs")


def test_the_published_numbers_name_only_robust_spaces_and_known_methods():
    source, ours, errors = paper_numbers()
    assert "DARTS-PT" in source and set(ours) == {"darts1", "darts_pt"}
    assert {space for _, space, _ in errors} == set(ROBUST_SPACES)
    assert errors["DARTS", "s4", "cifar10"] == 7.20 and errors["DARTS+PT", "s3", "svhn"] == 2.42


def test_table_a1_sets_an_is_darts_cifar100_search_beside_the_papers_appendix_c(tmp_path):
    from isdarts.report.table_a1 import C100_RESULTS, cifar100_search_lines

    (line,) = cifar100_search_lines(tmp_path)
    assert "70.71 valid / 71.11 test" in line and "ours not run" in line and "--dataset cifar100" in line
    (tmp_path / C100_RESULTS).write_text(json.dumps({
        "profile": "quick", "summary": {"n_runs": 2, "mean": {"cifar100_valid": 69.5, "cifar100_test": 70.25}}}))
    (line,) = cifar100_search_lines(tmp_path)
    assert "ours 69.50 valid / 70.25 test, mean of 2 seed(s), profile `quick`" in line
    (tmp_path / C100_RESULTS).write_text("[]")
    with pytest.raises(ReportError, match="not an NB201 results file"):
        cifar100_search_lines(tmp_path)
