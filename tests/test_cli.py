"""The `isdarts` command line: outputs, and bad input turned into one clear line and a non-zero exit."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from isdarts.cli import EXIT_BAD_INPUT, EXIT_RUN_FAILED, main

ROOT = Path(__file__).resolve().parents[1]
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_console_script_help_lists_the_steps():
    exe = Path(sys.executable).parent / "isdarts"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("prepare-data", "search", "lookup", "collect", "report"):
        assert command in out


def test_lookup_prints_the_six_benchmark_accuracies(capsys):
    assert main(["lookup", BEST]) == 0
    out = capsys.readouterr().out
    assert "index 9930" in out and "94.36" in out and "46.34" in out


def test_lookup_of_a_bad_string_names_the_op(capsys):
    assert main(["lookup", BEST.replace("nor_conv_1x1", "x").replace("skip_connect~0", "conv_7x7~0")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("isdarts: error:") and "conv_7x7" in err


def test_bad_params_are_rejected_before_any_work(tmp_path, capsys, monkeypatch):
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["nb201"]["search"]["epochs"] = -1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--seed", "0"]) == EXIT_BAD_INPUT
    assert "nb201.search.epochs = -1" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "checkpoints").exists()


def test_search_without_prepared_data_names_the_path_and_the_fix(tmp_path, capsys, monkeypatch):
    shutil.copy(ROOT / "profiles/quick.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--seed", "0"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "data/prepared" in err and "prepare_data" in err
    assert not (tmp_path / "runs").exists()


def test_missing_dataset_names_every_path_tried(tmp_path, capsys, monkeypatch):
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["data"].update(cifar10_root=str(tmp_path / "nowhere"), subset_fallback=None)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert main(["prepare-data"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "download" in err
    assert not (tmp_path / "data" / "prepared").exists()


def test_an_unknown_method_or_sweep_rate_is_rejected_naming_what_is_configured(tmp_path, capsys, monkeypatch):
    shutil.copy(ROOT / "profiles/quick.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", "darts", "--method", "lambda_darts", "--seed", "0"]) == EXIT_BAD_INPUT
    assert "method 'lambda_darts' has no section darts" in capsys.readouterr().err
    assert main(["search", "--space", "darts", "--seed", "0", "--rate", "r9"]) == EXIT_BAD_INPUT
    assert "unknown sweep rate 'r9'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_retrain_with_an_unknown_named_genotype_lists_the_shipped_ones(tmp_path, capsys, monkeypatch):
    shutil.copy(ROOT / "profiles/quick.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["retrain", "--seed", "0", "--genotype", "DARTS_V9"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "DARTS_V9" in err and "DARTS_V2" in err
    assert main(["retrain", "--seed", "0", "--genotype", "missing.json"]) == EXIT_BAD_INPUT
    assert "genotype file missing.json not found" in capsys.readouterr().err


def test_a_mapping_where_a_method_name_belongs_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["nb201"]["methods"][1] = {"name": "darts1"}  # used to raise TypeError: unhashable type: 'dict'
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--seed", "0"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("isdarts: error: params.yaml: nb201.methods = {'name': 'darts1'} is not allowed")
    assert len(err.strip().splitlines()) == 1


def test_an_unexpected_failure_is_one_line_with_the_log_holding_the_traceback(tmp_path, capsys, monkeypatch):
    """Any exception isdarts does not raise on purpose (a bug, an environment failure) still ends in one line
    and a non-zero exit; the traceback goes to a log file the line names."""
    shutil.copy(ROOT / "profiles/quick.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ISDARTS_LOG_DIR", str(tmp_path / "logs"))

    def broken(params, **_):
        raise KeyError("a bug")

    monkeypatch.setattr("isdarts.cli.prepare_data", broken)
    assert main(["prepare-data"]) == EXIT_RUN_FAILED
    err = capsys.readouterr().err
    assert err.startswith("isdarts: error: unexpected KeyError: 'a bug'") and len(err.strip().splitlines()) == 1
    (log,) = (tmp_path / "logs").glob("isdarts-error-*.log")
    assert str(log) in err
    assert "Traceback" in log.read_text() and "in broken" in log.read_text()
