"""The search loop on tiny real-format data: single-path result, resume equivalence, bad runs."""

import copy
import dataclasses
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml

from isdarts.config import ConfigError, params_from_dict
from isdarts.data.cifar import load_cifar10, locate_cifar10
from isdarts.search import loop
from isdarts.search.darts import Darts
from isdarts.search.loop import CHECKPOINT_NAME, SearchRun, run_search
from isdarts.spaces.nb201.genotype import Nb201Genotype
from isdarts.train.checkpoint import CheckpointError
from isdarts.train.runtime import NonFiniteLossError

ROOT = Path(__file__).resolve().parents[1]
TIMING_KEYS = {"images_per_s", "epoch_seconds"}


def tiny_params(method: str = "isdarts", **search):
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["profile"], raw["device"] = "smoke", "cpu"
    raw["nb201"]["search"].update({"C": 4, "N": 1, "epochs": 5, "batch_size": 32, "log_every": 1, **search})
    options = raw["nb201"]["options"]
    for name in ("isdarts", "sdarts"):
        options[name]["shrink"] = {"steps": 4, "interval": 1}
    for name in ("isdarts", "idarts"):
        options[name]["iim"].update(n_samples=32, batch_size=32, every_epoch=name == "isdarts")
    return params_from_dict(raw).nb201.search(method)


@pytest.fixture
def arrays(tiny_cifar_dir):
    source = locate_cifar10(tiny_cifar_dir, download=False, subset_fallback=tiny_cifar_dir)
    data = load_cifar10(source)
    data.train_x, data.train_y = data.train_x[:64], data.train_y[:64]
    return data


def search(cfg, arrays, ckpt: Path, **kwargs):
    run = SearchRun(cfg, 0, profile="smoke", device="cpu", data_kind="subset", data_fingerprint="tiny",
                    checkpoint_dir=ckpt)
    return run_search(run, arrays, progress=False, **kwargs)


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
    monkeypatch.setattr(loop, "code_fingerprint", lambda *_: "another-version")
    assert search(tiny_params(), arrays, tmp_path, stop_after_epochs=1)["epochs_done"] == 1


def test_code_fingerprint_follows_the_result_modules(tmp_path, monkeypatch):
    module = tmp_path / "probe_module_for_fingerprint.py"
    module.write_text("A = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = loop.code_fingerprint(("probe_module_for_fingerprint",))
    module.write_text("A = 2\n")
    assert loop.code_fingerprint(("probe_module_for_fingerprint",)) != before


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
    cfg = tiny_params()
    iim = dataclasses.replace(cfg.iim, source="holdout_subset", n_samples=16)
    result = search(dataclasses.replace(cfg, iim=iim), arrays, tmp_path)
    assert "none" not in result["metrics"]["arch_str"]
    assert result["history"]["epochs"][0]["train_acc"] is not None
    too_many = dataclasses.replace(cfg, iim=dataclasses.replace(iim, n_samples=64))
    with pytest.raises(ConfigError, match="leaves no training data"):
        search(too_many, arrays, tmp_path / "x")


@pytest.mark.parametrize("method", ["darts1", "darts2", "lambda_darts", "gdas"])
def test_bilevel_methods_train_on_half_record_alpha_and_resume_exactly(arrays, tmp_path, method):
    cfg = dataclasses.replace(tiny_params(method), epochs=3)
    full = search(cfg, arrays, tmp_path / "a")
    epochs = full["history"]["epochs"]
    # 64 training images split 32/32: the weights see 32 per epoch (1 batch), α the other 32.
    assert all(r["train_acc"] * 32 / 100 == round(r["train_acc"] * 32 / 100) for r in epochs)
    alpha = torch.tensor(epochs[-1]["alpha"])
    assert alpha.shape == (6, 5) and not torch.allclose(alpha, torch.tensor(epochs[0]["alpha"]))
    genotype = Nb201Genotype.from_json(full["genotype"])
    assert genotype.to_arch_str() == Nb201Genotype.from_op_indices(alpha.argmax(1).tolist()).to_arch_str()
    assert full["metrics"]["method"] == method and full["metrics"]["paper_mismatches"]
    stopped = search(cfg, arrays, tmp_path / "b", stop_after_epochs=1)
    assert stopped == {"finished": False, "epochs_done": 1}
    resumed = search(cfg, arrays, tmp_path / "b")
    assert strip_timing(resumed["history"]) == strip_timing(full["history"])


@pytest.mark.parametrize("method", ["darts2", "lambda_darts"])
def test_a_bilevel_search_stopped_inside_an_epoch_resumes_every_running_statistic(
    arrays, tmp_path, monkeypatch, method
):
    """SIGTERM at step 2 of epoch 2 (of 4): the resumed run's whole history, the α-step loss and Λ-DARTS's
    alignment included (their running sums restart otherwise), equals an uninterrupted run's."""
    from isdarts.train.preempt import Preempted

    cfg = dataclasses.replace(tiny_params(method), epochs=3, batch_size=8)  # 32 weight images: 4 steps an epoch
    full = search(cfg, arrays, tmp_path / "a")
    steps, original = [], Darts.train_step

    def train_step(self, *batch):
        steps.append(len(steps))
        if len(steps) == 6:  # epoch 2, step 2: after its first step, so the epoch's sums are part-filled
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *batch)

    monkeypatch.setattr(Darts, "train_step", train_step)
    with pytest.raises(Preempted, match="epoch 2"):
        search(cfg, arrays, tmp_path / "b")
    monkeypatch.setattr(Darts, "train_step", original)
    resumed = search(cfg, arrays, tmp_path / "b")
    assert strip_timing(resumed["history"]) == strip_timing(full["history"])
    assert all(r["arch_loss"] is not None for r in full["history"]["epochs"])


def test_the_weight_and_valid_halves_are_disjoint_and_the_same_for_every_seed(arrays):
    from isdarts.data.device_loader import DeviceImages

    train = DeviceImages(arrays.train_x, arrays.train_y, "cpu")
    cfg = tiny_params("darts1")
    parts = [loop.split_search_data(train, train, cfg, seed, "subset") for seed in (0, 5)]
    for data in parts:
        rows = {tuple(x.flatten().tolist()[:64]) for x in data.train.x} | {
            tuple(x.flatten().tolist()[:64]) for x in data.valid.x}
        assert len(data.train) == len(data.valid) == 32 and len(rows) == 64 and data.iim is None
    assert torch.equal(parts[0].valid.x, parts[1].valid.x)


def test_sdarts_shrinks_by_alpha_and_idarts_selects_once_at_the_end(arrays, tmp_path):
    sdarts = search(tiny_params("sdarts"), arrays, tmp_path / "s")["history"]["epochs"]
    assert [r["shrink_step"] for r in sdarts] == [0, 1, 2, 3, None]
    assert [sum(map(sum, r["alive"])) for r in sdarts] == [24, 18, 12, 6, 6]
    idarts = search(tiny_params("idarts"), arrays, tmp_path / "i")["history"]["epochs"]
    assert [r["shrink_step"] for r in idarts] == [None, None, None, None, 0]
    assert [sum(map(sum, r["alive"])) for r in idarts] == [30, 30, 30, 30, 6]


def tiny_darts_cfg(method: str = "isdarts"):
    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["darts"]["search"].update(C=4, N=1, epochs=3, batch_size=16, log_every=1, image_size=8, train_images=48,
                                  test_images=16)
    raw["darts"]["options"]["isdarts"].update(
        shrink={"steps": 2, "interval": 1},
        iim={"source": "holdout_subset", "n_samples": 16, "batch_size": 16, "every_epoch": True},
    )
    raw["darts"]["sweep"]["epochs"] = 21
    if method != "isdarts":  # the quick profile runs IS-DARTS alone on this space; DARTS keeps its defaults
        raw["darts"]["methods"].append(method)
        raw["darts"]["options"][method] = raw["nb201"]["options"][method]
    return params_from_dict(raw).darts.runs.search(method)


def test_isdarts_on_the_darts_space_ends_with_two_inputs_per_node_and_resumes_exactly(arrays, tmp_path):
    from isdarts.spaces.darts.genotype import DartsGenotype

    cfg = tiny_darts_cfg()
    full = search(cfg, arrays, tmp_path / "a")
    epochs = full["history"]["epochs"]
    assert [r["shrink_step"] for r in epochs] == [0, 1, None]
    # Per node 16/24/32/40 candidates -> ceil((n-2)/2) pruned at step 0 -> exactly 2 after step 1.
    per_kind = [sum(map(sum, epochs[0]["alive"][kind])) for kind in ("normal", "reduce")]
    assert per_kind == [9 + 13 + 17 + 21] * 2
    assert [sum(map(sum, epochs[1]["alive"][kind])) for kind in ("normal", "reduce")] == [8, 8]
    assert epochs[0]["genotype"] is not None and epochs[-1]["genotype"] == full["metrics"]["genotype"]
    genotype = DartsGenotype.from_json(full["genotype"])
    assert all(len(node) == 2 and all(op != "none" for op, _ in node) for node in genotype.normal + genotype.reduce)
    assert full["metrics"]["shrink"]["epochs"] == [1, 2] and full["history"]["kinds"] == ["normal", "reduce"]
    stopped = search(cfg, arrays, tmp_path / "b", stop_after_epochs=1)
    assert stopped == {"finished": False, "epochs_done": 1}
    resumed = search(cfg, arrays, tmp_path / "b")
    assert resumed["genotype"] == full["genotype"]
    assert strip_timing(resumed["history"]) == strip_timing(full["history"])


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("method", ["darts1", "darts2", "lambda_darts", "sdarts", "idarts", "gdas"])
def test_every_method_also_runs_on_the_darts_space(arrays, tmp_path, method):
    from isdarts.spaces.darts.genotype import DartsGenotype

    raw = yaml.safe_load((ROOT / "profiles/quick.yaml").read_text())
    raw["darts"]["search"].update(C=4, N=1, epochs=2, batch_size=16, log_every=1, image_size=8, train_images=32,
                                  test_images=16)
    options = copy.deepcopy(raw["nb201"]["options"][method])
    if "shrink" in options:
        options["shrink"] = {"steps": 1, "interval": 1}
    if "iim" in options:
        options["iim"].update(n_samples=16, batch_size=16)
    raw["darts"]["options"][method] = options
    raw["darts"]["options"]["isdarts"]["shrink"] = {"steps": 1, "interval": 1}
    raw["darts"]["sweep"]["epochs"] = 21
    cfg = params_from_dict(raw).darts.runs.search(method)
    result = search(cfg, arrays, tmp_path)
    genotype = DartsGenotype.from_json(result["genotype"])
    assert result["metrics"]["genotype"] == str(genotype) and result["history"]["kinds"] == ["normal", "reduce"]
    last = result["history"]["epochs"][-1]
    if cfg.bilevel:
        assert set(last["alpha"]) == {"normal", "reduce"} and len(last["alpha"]["normal"]) == 14
    if method in ("sdarts", "idarts"):  # one step after the last epoch leaves two candidates per node
        assert [sum(map(sum, last["alive"][k])) for k in ("normal", "reduce")] == [8, 8]
