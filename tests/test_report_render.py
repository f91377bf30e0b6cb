"""Tests for isdarts.report.render: cells and columns rendered to markdown and CSV, and the tables' CSV headers."""

from __future__ import annotations

import pytest

from isdarts.report import table1, table2, table3, table_a1, table_a2
from isdarts.report.render import (
    COST,
    JUDGED,
    Cell,
    Column,
    JudgedCell,
    col,
    cost,
    csv_header,
    judge,
    number,
    spread,
    summarize,
    table_csv,
    table_md,
)

ACC = tuple(f"{k}_{p}" for k in ("cifar10_valid", "cifar10_test", "cifar100_valid", "cifar100_test",
                                 "imagenet16_valid", "imagenet16_test") for p in ("mean", "std", "verdict"))

# The committed CSVs' headers, written out: the column specs must keep producing exactly these.
HEADERS = {
    table1: ("source", "method", "profile", "n_runs", "cost", "cost_unit", *ACC),
    table_a1: ("source", "method", "profile", "n_runs", "seeds", "cost", "cost_unit", *ACC),
    table2: ("source", "architecture", "profile", "n_runs", "seeds", "test_error_mean", "test_error_std",
             "test_error_verdict", "best_error_mean", "best_error_std", "best_error_verdict", "params_m_mean",
             "params_m_std", "cost", "cost_unit", "method"),
    table3: ("source", "architecture", "profile", "tiny_data", "n_runs", "seeds", "top1_error_mean", "top1_error_std",
             "top1_error_verdict", "top5_error_mean", "top5_error_std", "top5_error_verdict", "params_m_mean",
             "params_m_std", "madds_m_mean", "madds_m_std", "madds_input", "cost", "cost_unit", "method"),
    table_a2: ("source", "rate_name", "rate", "rate_label", "profile", "seed", "steps", "interval", "test_error",
               "test_error_verdict", "best_error", "best_error_verdict", "params_m", "cost", "cost_unit"),
}


@pytest.mark.parametrize("module", list(HEADERS), ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_csv_headers_are_the_committed_ones(module):
    assert csv_header(module.COLUMNS) == HEADERS[module]


COLUMNS = (col("who", "Who"), col("seeds"), col("err", "Err", "r", JUDGED), Column("note", "Note", (), "c"), COST)


def test_one_row_spec_renders_both_files():
    ours = JudgedCell(summarize([2.0, 3.0]), 2.4, judge(2.5, 2.4, 0.3, comparable=True))
    rows = [{"who": "paper", "err": number(2.4, 0.1), "cost": cost(1.5, "GPU-days", "paper")},
            {"who": "ours", "seeds": "0 1", "err": ours.cell, "note": Cell("md only"), "cost": cost(None, None),
             "unprinted": "ignored"}]
    assert table_md(COLUMNS, rows) == ("| Who | Err | Note | Search cost |\n|---|---:|:---:|---:|\n"
                                       "| paper | 2.40±0.10 | – | 1.5 GPU-days |\n"
                                       "| ours | 2.50±0.71 ✓ | md only | – |\n")
    # A missing cell is empty in CSV; a cell shorter than its column (the paper's: no verdict) is padded.
    assert table_csv(COLUMNS, rows) == ("who,seeds,err_mean,err_std,err_verdict,cost,cost_unit\n"
                                        "paper,,2.4,0.1,,1.5,GPU-days\n"
                                        "ours,0 1,2.5,0.7071,within ±0.3 of paper,,\n")


def test_cells():
    assert number(3.46) == Cell("3.46", ("3.46",)) and number(None) == Cell("–", ("",))
    assert spread(summarize([54.2967])) == Cell("54.30±0.00 (n=1)", ("54.2967", ""))
    assert spread(summarize([574.2, 574.4]), 1).md == "574.3±0.1"
    assert cost(0.0005801, "CPU-days") == Cell("0.00058 CPU-days", ("0.0005801", "CPU-days"))
    assert cost(3.2, "GPU-hours", "hours") == Cell("3.20 GPU-hours", ("3.2", "GPU-hours"))
    assert cost(None, "GPU-days", "paper") == Cell("–", ("", "GPU-days"))  # the paper's unit stays in CSV


def test_a_cell_wider_than_its_column_is_an_error():
    with pytest.raises(ValueError, match="column 'who' has 1 CSV columns"):
        table_csv(COLUMNS, [{"who": Cell("x", ("a", "b"))}])
