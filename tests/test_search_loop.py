"""The search loop on tiny real-format data: single-path result, resume equivalence, bad runs."""

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from isdarts.config import ConfigError, params_from_dict
from isdarts.data.cifar import load_cifar10, locate_cifar10
from isdarts.spaces.nb201_genotype import Nb201Genotype
from isdarts.train import search_loop
from isdarts.train.checkpoint import CheckpointError
from isdarts.train.runtime import NonFiniteLossError
from isdarts.train.search_loop import CHECKPOINT_NAME, run_nb201_search

ROOT = Path(__file__).resolve().parents[1]
TIMING_KEYS = {"images_per_s", "epoch_seconds"}


def tiny_params(**search):
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    raw["nb201_search"].update(C=4, N=1, epochs=5, batch_size=32, log_every=1, **search)
    raw["nb201_search"]["shrink"] = {"steps": 4, "interval": 1}
    raw["nb201_search"]["iim"].update(n_samples=32, batch_size=32, every_epoch=True)
    return params_from_dict(raw)


@pytest.fixture
def arrays(tiny_cifar_dir):
    source = locate_cifar10(tiny_cifar_dir, download=False, subset_fallback=tiny_cifar_dir)
    data = load_cifar10(source)
    data.train_x, data.train_y = data.train_x[:64], data.train_y[:64]
    return data


def search(params, arrays, ckpt: Path, **kwargs):
    return run_nb201_search(
        params, 0, arrays, data_kind="subset", data_fingerprint="tiny", checkpoint_dir=ckpt, progress=False, **kwargs
    )


def strip_timing(history):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in history["epochs"]]


def test_search_ends_single_path_on_schedule_and_resume_matches_an_uninterrupted_run(arrays, tmp_path):
    params = tiny_params()
    full = search(params, arrays, tmp_path / "a")
    epochs = full["history"]["epochs"]
    assert [r["shrink_step"] for r in epochs] == [0, 1, 2, 3, None]  # after epochs 1..4 of 5
    assert [sum(map(sum, r["alive"])) for r in epochs] == [24, 18, 12, 6, 6]
    assert all(r["iim"] is not None for r in epochs)  # every_epoch monitoring
    assert all(op == "none" for _, op in epochs[0]["pruned"])  # +inf goes first
    genotype = Nb201Genotype.from_json(full["genotype"])
    assert genotype.to_arch_str() == full["metrics"]["arch_str"] == epochs[-1]["genotype"]
    assert "none" not in genotype.ops

    stopped = search(params, arrays, tmp_path / "b", stop_after_epochs=2)
    assert stopped == {"finished": False, "epochs_done": 2}
    resumed = search(params, arrays, tmp_path / "b")
    assert resumed["genotype"] == full["genotype"]
    assert strip_timing(resumed["history"]) == strip_timing(full["history"])
    for key in ("final_train_loss", "final_train_acc", "final_test_acc", "arch_str"):
        assert resumed["metrics"][key] == full["metrics"][key]


def test_checkpoint_of_other_settings_is_not_resumed(arrays, tmp_path):
    search(tiny_params(), arrays, tmp_path, stop_after_epochs=1)
    other = search(tiny_params(lr=0.05), arrays, tmp_path, stop_after_epochs=1)
    assert other["epochs_done"] == 1  # started afresh, not at epoch 2


def test_checkpoint_of_other_code_is_not_resumed(arrays, tmp_path, monkeypatch):
    search(tiny_params(), arrays, tmp_path, stop_after_epochs=1)
    monkeypatch.setattr(search_loop, "code_fingerprint", lambda: "another-version")
    assert search(tiny_params(), arrays, tmp_path, stop_after_epochs=1)["epochs_done"] == 1


def test_code_fingerprint_follows_the_result_modules(tmp_path, monkeypatch):
    module = tmp_path / "probe_module_for_fingerprint.py"
    module.write_text("A = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = search_loop.code_fingerprint(("probe_module_for_fingerprint",))
    module.write_text("A = 2\n")
    assert search_loop.code_fingerprint(("probe_module_for_fingerprint",)) != before


def test_corrupt_checkpoint_is_reported_not_restarted_over(arrays, tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"(?s){CHECKPOINT_NAME} is corrupt.*Delete it to restart"):
        search(tiny_params(), arrays, tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == b"not a checkpoint"


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(arrays, tmp_path):
    params = tiny_params()
    search(params, arrays, tmp_path, stop_after_epochs=1)
    good = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    poisoned = copy.deepcopy(arrays)
    # Resuming the same run, but the weights meet a non-finite input from now on.
    state = good["method"]["model"]
    state["classifier.bias"] = torch.full_like(state["classifier.bias"], float("nan"))
    torch.save(good, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2, step 1"):
        search(params, poisoned, tmp_path)
    after = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert after["epochs_done"] == 1


def test_holdout_iim_source_measures_on_a_held_out_split(arrays, tmp_path):
    raw_params = tiny_params()
    iim = dataclasses.replace(raw_params.nb201_search.iim, source="holdout_subset", n_samples=16)
    params = dataclasses.replace(raw_params, nb201_search=dataclasses.replace(raw_params.nb201_search, iim=iim))
    result = search(params, arrays, tmp_path)
    assert "none" not in result["metrics"]["arch_str"]
    assert result["history"]["epochs"][0]["train_acc"] is not None
    too_many = dataclasses.replace(params.nb201_search, iim=dataclasses.replace(iim, n_samples=64))
    with pytest.raises(ConfigError, match="leaves no training data"):
        search(dataclasses.replace(params, nb201_search=too_many), arrays, tmp_path / "x")
