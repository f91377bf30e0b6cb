"""params.yaml validation: bad values are rejected before any compute, naming the key and what is allowed."""

import copy
from pathlib import Path

import pytest
import yaml

from isdarts.config import ConfigError, load_params, paper_mismatches, params_from_dict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def quick() -> dict:
    return yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())


def test_shipped_profiles_validate_and_paper_matches_the_spec():
    quick = load_params(ROOT / "profiles/quick.yaml")
    paper = load_params(ROOT / "profiles/paper.yaml")
    assert quick.profile == "quick" and paper_mismatches(quick.nb201_search)
    assert paper.profile == "paper" and paper_mismatches(paper.nb201_search) == []
    cfg = paper.nb201_search
    assert (cfg.C, cfg.N, cfg.epochs, cfg.batch_size, cfg.shrink.steps, cfg.shrink.interval) == (16, 5, 30, 64, 4, 2)
    assert cfg.iim.source == "train_full" and cfg.iim.n_samples is None
    assert paper.nb201_seeds == (0, 1, 2, 3) and paper.data.subset_fallback is None


def test_params_yaml_is_a_valid_profile():
    load_params(ROOT / "params.yaml")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("nb201_search", "epochs"), -3, "nb201_search.epochs = -3 .* an integer >= 1"),
        (("nb201_search", "epochs"), "ten", "nb201_search.epochs = 'ten' .* an integer"),
        (("nb201_search", "lr"), float("nan"), "nb201_search.lr .* a finite number"),
        (("nb201_search", "shrink", "steps"), 5, "more shrink steps than the 5 NB201 ops allow"),
        (("nb201_search", "shrink", "interval"), 9, "must be < nb201_search.epochs"),
        (("nb201_search", "method"), "enas", "nb201_search.method = 'enas' .* one of isdarts"),
        (("nb201_search", "iim", "source"), "test_set", "iim.source = 'test_set' .* train_full, holdout_subset"),
        (("nb201_search", "iim", "n_samples"), 0, "'all' or a positive integer"),
        (("device",), "tpu", "device = 'tpu' .* auto, cpu, cuda or cuda:N"),
        (("profile",), "fast", "profile = 'fast'"),
        (("nb201_seeds",), [0, 0], "distinct non-negative"),
        (("data", "download"), "yes", "data.download = 'yes' .* true or false"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(quick, path, value, message):
    raw = copy.deepcopy(quick)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        params_from_dict(raw)


def test_unknown_and_missing_keys(quick):
    raw = copy.deepcopy(quick)
    raw["nb201_search"]["epochz"] = 3
    with pytest.raises(ConfigError, match="unknown key.*nb201_search.epochz"):
        params_from_dict(raw)
    raw = copy.deepcopy(quick)
    del raw["nb201_search"]["batch_size"]
    with pytest.raises(ConfigError, match="missing key nb201_search.batch_size"):
        params_from_dict(raw)


def test_a_paper_label_on_quick_settings_is_refused(quick):
    raw = copy.deepcopy(quick)
    raw["profile"] = "paper"
    with pytest.raises(ConfigError, match="profile = 'paper' but nb201_search differs from the paper: C=8"):
        params_from_dict(raw)


def test_missing_and_malformed_params_files(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("profile: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
