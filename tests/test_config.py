"""params.yaml validation: bad values are rejected before any compute, naming the key and what is allowed."""

import copy
from pathlib import Path

import pytest
import yaml

from isdarts.config import METHODS, ConfigError, load_params, paper_mismatches, params_from_dict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def quick() -> dict:
    return yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())


def test_shipped_profiles_validate_and_paper_matches_the_spec():
    quick = load_params(ROOT / "profiles/quick.yaml")
    paper = load_params(ROOT / "profiles/paper.yaml")
    assert quick.profile == "quick" and paper_mismatches(quick.nb201.search("isdarts"))
    assert paper.profile == "paper"
    for runs in (paper.nb201, paper.darts.runs):
        for method in runs.methods:
            assert paper_mismatches(runs.search(method)) == [], (runs.space, method)
    cfg = paper.nb201.search("isdarts")
    assert (cfg.C, cfg.N, cfg.epochs, cfg.batch_size, cfg.shrink.steps, cfg.shrink.interval) == (16, 5, 30, 64, 4, 2)
    assert cfg.iim.source == "train_full" and cfg.iim.n_samples is None
    assert paper.nb201.seeds == (0, 1, 2, 3) and paper.data.subset_fallback is None
    # The paper profile runs every method that has official NB201 settings (a `paper` row for the space).
    assert set(paper.nb201.methods) == {name for name, spec in METHODS.items() if "nb201" in spec.paper}
    # ... and on the DARTS space, all but DrNAS (see paper.yaml: its K 6 -> 4 split cannot divide 9 channels).
    with_darts_settings = {name for name, spec in METHODS.items() if "darts" in spec.paper}
    assert set(paper.darts.runs.methods) == with_darts_settings - {"drnas"}
    darts2 = paper.darts.runs.search("darts2")
    assert (darts2.C, darts2.N, darts2.epochs, darts2.nesterov, darts2.shuffle) == (16, 2, 50, False, True)
    darts1 = paper.nb201.search("darts1")
    assert (darts1.epochs, darts1.weight_decay, darts1.train_portion, darts1.arch.lr) == (50, 5e-4, 0.5, 3e-4)
    darts = paper.darts.runs.search("isdarts")
    assert (darts.C, darts.N, darts.epochs, darts.shrink.steps, darts.shrink.interval) == (16, 2, 50, 7, 3)
    assert paper.darts.retrain.mismatches() == [] and paper.darts.imagenet.mismatches() == []
    sweep = paper.darts.sweep
    assert [(sweep.schedules[r].shrink.steps, sweep.schedules[r].shrink.interval) for r in sweep.rates] == [
        (1, 1), (2, 18), (4, 6), (7, 3), (10, 2), (20, 1)
    ]
    assert sweep.search(darts, "r0_5").shrink.anchor == "last"


def test_params_yaml_is_a_valid_profile():
    load_params(ROOT / "params.yaml")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("nb201", "search", "epochs"), -3, r"nb201.search.epochs = -3 .* an integer >= 1"),
        (("nb201", "search", "epochs"), "ten", r"nb201.search.epochs = 'ten' .* an integer"),
        (("nb201", "search", "lr"), float("nan"), r"nb201.search.lr .* a finite number"),
        (("nb201", "options", "isdarts", "shrink", "steps"), 5, "more shrink steps than the 5 NB201 ops allow"),
        (("nb201", "options", "isdarts", "shrink", "interval"), 9, "do not fit the search's epochs = 6"),
        (("nb201", "methods"), ["nosuch"], r"nb201.methods = 'nosuch' .* method names from isdarts"),
        (("nb201", "options", "isdarts", "iim", "source"), "test_set", "'test_set' .* train_full, holdout_subset"),
        (("nb201", "options", "isdarts", "iim", "n_samples"), 0, "'all' or a positive integer"),
        (("nb201", "options", "darts1", "arch", "betas"), [0.5], "two numbers in"),
        (("nb201", "options", "lambda_darts", "regulariser"), "cos", "one of corr, signcorr"),
        (("darts", "search", "image_size"), 12, "image_size = 12 .* one of 8, 16, 32"),
        (("darts", "retrain", "drop_path_prob"), 1.5, r"darts.retrain: .*drop_path_prob must be in \[0, 1\)"),
        (("darts", "imagenet", "bn"), "magic", "darts.imagenet: .*bn must be one of"),
        (("darts", "sweep", "rates"), ["r7"], "'r7' is not allowed; expected rate names from r1"),
        (("darts", "sweep", "schedules", "r0_05", "steps"), 30, "darts.sweep.schedules.r0_05.shrink.steps/interval"),
        (("device",), "tpu", "device = 'tpu' .* auto, cpu, cuda or cuda:N"),
        (("profile",), "fast", "profile = 'fast'"),
        (("nb201", "seeds"), [0, 0], "distinct non-negative"),
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


def test_an_option_that_does_not_apply_names_the_method_and_its_options(quick):
    raw = copy.deepcopy(quick)
    raw["nb201"]["options"]["darts1"]["shrink"] = {"steps": 4, "interval": 1}
    with pytest.raises(ConfigError, match=r"nb201.options.darts1.shrink does not apply to method 'darts1'; "
                                          r"its options are arch, train_portion"):
        params_from_dict(raw)
    raw = copy.deepcopy(quick)
    raw["nb201"]["methods"].append("no_such_method")
    with pytest.raises(ConfigError, match="'no_such_method' is not allowed; expected method names from isdarts"):
        params_from_dict(raw)
    raw = copy.deepcopy(quick)
    del raw["nb201"]["options"]["sdarts"]
    with pytest.raises(ConfigError, match="nb201.methods lists sdarts but nb201.options has no section"):
        params_from_dict(raw)


def test_a_method_section_overrides_the_shared_search_settings(quick):
    raw = copy.deepcopy(quick)
    raw["nb201"]["options"]["darts1"].update(epochs=9, weight_decay=5e-4)
    params = params_from_dict(raw)
    assert params.nb201.search("darts1").epochs == 9 and params.nb201.search("darts1").weight_decay == 5e-4
    assert params.nb201.search("isdarts").epochs == raw["nb201"]["search"]["epochs"]
    assert params.nb201.search("darts2").order == 2 and params.nb201.search("darts2").bilevel
    assert not params.nb201.search("idarts").bilevel


def test_unknown_and_missing_keys(quick):
    raw = copy.deepcopy(quick)
    raw["nb201"]["search"]["epochz"] = 3
    with pytest.raises(ConfigError, match="unknown key.*nb201.search.epochz"):
        params_from_dict(raw)
    raw = copy.deepcopy(quick)
    del raw["nb201"]["search"]["batch_size"]
    with pytest.raises(ConfigError, match="missing key nb201.search.batch_size"):
        params_from_dict(raw)


def test_a_paper_label_on_quick_settings_is_refused(quick):
    raw = copy.deepcopy(quick)
    raw["profile"] = "paper"
    with pytest.raises(ConfigError, match="profile = 'paper' but these settings differ from the paper: "
                                          r"nb201.isdarts: image_size=16 \(paper: 32\); nb201.isdarts: C=8"):
        params_from_dict(raw)


def test_missing_and_malformed_params_files(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("profile: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_the_sweep_stages_and_schedules_are_the_ones_table_a2_lists():
    from isdarts.report.paper import TABLE_A2
    from isdarts.search.shrink import shrink_epochs

    paper = load_params(ROOT / "profiles/paper.yaml")
    sweep = paper.darts.sweep
    schedules = [sweep.schedules[name] for name in sweep.rates]
    assert [(s.label, s.rate, s.shrink.steps) for s in schedules] == [(r.label, r.rate, r.steps) for r in TABLE_A2]
    assert [s.shrink.interval for s in schedules[1:]] == [r.interval_epochs for r in TABLE_A2[1:]]
    # Spec §3.3: start = E - S*I with the table's I, except rate 0.5, whose last step is at epoch E - 1.
    epochs = [shrink_epochs(sweep.epochs, s.shrink.steps, s.shrink.interval, s.shrink.anchor) for s in schedules]
    assert epochs[:4] == [[49], [31, 49], [26, 32, 38, 44], [29, 32, 35, 38, 41, 44, 47]]
    assert epochs[4] == list(range(30, 50, 2)) and epochs[5] == list(range(30, 50))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("sweep_search", "sweep_retrain"):
        assert stages[name]["matrix"] == {"rate": "${darts.sweep.rates}"}
    # The quick profile runs some of the rates (in the table's order) but keeps every schedule, each with the
    # paper's number of steps, so adding a rate back is a one-word edit of `rates`.
    quick = load_params(ROOT / "profiles/quick.yaml").darts.sweep
    assert quick.rates == tuple(r for r in sweep.rates if r in quick.rates)
    assert {"r1", "r0_143"} <= set(quick.rates)  # no shrinking (I-DARTS) and the paper's setting
    assert [quick.schedules[n].shrink.steps for n in sweep.rates] == [r.steps for r in TABLE_A2]
