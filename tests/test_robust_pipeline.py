"""The robust spaces in params.yaml and dvc.yaml: the `robust` section's checks, where each space's runs read their
settings, and one DVC stage per space x method x seed (and per extra dataset)."""

import copy
from pathlib import Path

import pytest
import yaml

from isdarts.config import params_from_dict
from isdarts.config.params import EXTRA_DATASETS, ROBUST_SPACES
from isdarts.data.datasets import DATASETS, DEFAULT_DATASET
from isdarts.errors import ConfigError
from isdarts.pipeline.layout import run_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def quick():
    return yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())


def test_each_robust_space_searches_with_the_shared_settings_under_its_own_name(quick):
    params = params_from_dict(quick)
    assert params.robust.spaces and set(params.robust.spaces) <= set(ROBUST_SPACES)
    for space in params.robust.spaces:
        cfg = params.space(space).search("isdarts")
        assert cfg.space == space and cfg.C == quick["robust"]["search"]["C"]
        assert params.retrain_params(space) is params.robust.retrain
    assert params.retrain_params("darts") is params.darts.retrain
    assert run_dir("s3", "isdarts", 0) == Path("runs/s3/search/isdarts/seed_0")
    assert run_dir("s3", "isdarts", 0, step="retrain", dataset="svhn") == Path("runs/s3-svhn/retrain/isdarts/seed_0")


def test_the_extra_datasets_are_the_data_layer_s(quick):
    assert EXTRA_DATASETS == tuple(name for name in DATASETS if name != DEFAULT_DATASET)
    assert ROBUST_SPACES == ("s1", "s2", "s3", "s4", "s5")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: r["robust"].update(spaces=["s6"]), "robust.spaces.*space names from s1, s2, s3, s4, s5"),
    (lambda r: r["robust"].update(spaces=["darts"]), "robust.spaces"),
    (lambda r: r["robust"].update(extra_datasets=["cifar10"]), "robust.extra_datasets.*cifar100, svhn"),
    (lambda r: (r["robust"].update(methods=["enas"]), r["robust"]["options"].update(enas={})),
     "method 'enas' does not run on the 's1' space"),
    (lambda r: r["robust"]["options"].pop("isdarts"), "robust.options has no section"),
    (lambda r: r["robust"].pop("retrain"), "missing key robust.retrain"),
    (lambda r: r["robust"].update(colour="red"), "unknown key.*robust.colour"),
])
def test_a_bad_robust_section_is_refused_naming_the_key(quick, edit, message):
    raw = copy.deepcopy(quick)
    edit(raw)
    with pytest.raises(ConfigError, match=message):
        params_from_dict(raw)


def test_no_robust_section_or_no_spaces_runs_none_and_says_so_when_asked(quick):
    raw = copy.deepcopy(quick)
    del raw["robust"]
    params = params_from_dict(raw)
    assert params.robust.spaces == ()
    with pytest.raises(ConfigError, match="the s2 space is not in robust.spaces"):
        params.space("s2")
    raw = copy.deepcopy(quick)
    raw["robust"]["spaces"] = []
    assert params_from_dict(raw).robust.retrain is None


def test_the_paper_profile_runs_no_robust_space_and_refuses_one():
    paper = yaml.safe_load((ROOT / "profiles/paper.yaml").read_text())
    assert params_from_dict(paper).robust.spaces == ()
    quick = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    paper["robust"] = quick["robust"]
    with pytest.raises(ConfigError, match="the IS-DARTS paper searched none of them"):
        params_from_dict(paper)


def test_dvc_has_one_stage_per_space_method_seed_and_dataset():
    from dvc.repo import Repo

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())["robust"]
    names = [stage.addressing for stage in Repo(str(ROOT)).index.stages]
    runs = len(raw["spaces"]) * len(raw["methods"]) * len(raw["seeds"])
    for family, count in (("search_robust@", runs), ("retrain_robust@", runs),
                          ("search_robust_data@", runs * len(raw["extra_datasets"])),
                          ("prepare_robust_data@", len(raw["extra_datasets"]))):
        assert sum(name.startswith(family) for name in names) == count, family
    assert f"search_robust@{raw['spaces'][0]}-{raw['methods'][0]}-{raw['seeds'][0]}" in names
