"""The CIFAR evaluation trainer on a tiny network: schedules, auxiliary loss, resume, bad runs, params."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from isdarts.config.train import RetrainConfig
from isdarts.data.cifar import load_cifar10, locate_cifar10
from isdarts.errors import CheckpointError, NonFiniteLossError
from isdarts.spaces.darts.genotype import load_named_genotype
from isdarts.train.retrain import (
    CHECKPOINT_NAME,
    TIMING_KEYS,
    build_network,
    drop_path_at,
    lr_at,
    retrain_cifar,
    training_loss,
)

TINY = RetrainConfig(
    C=4, layers=5, epochs=3, warmup_epochs=1, batch_size=16, lr=0.05, auxiliary_weight=0.4, drop_path_prob=0.2,
    cutout=8, log_every=1,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def arrays(tiny_cifar_dir):
    data = load_cifar10(locate_cifar10(tiny_cifar_dir, download=False, subset_fallback=tiny_cifar_dir))
    data.train_x, data.train_y = data.train_x[:48], data.train_y[:48]  # 3 steps of 16 per epoch
    return data


def retrain(arrays, ckpt: Path, cfg: RetrainConfig = TINY, **kwargs):
    genotype = load_named_genotype("DARTS_V2")
    return retrain_cifar(genotype, arrays, cfg, device="cpu", seed=0, checkpoint_dir=ckpt, **kwargs)


def strip_timing(result):
    metrics = {k: v for k, v in result["metrics"].items()
               if k not in {"images_per_s_mean", "train_seconds", "cost_hours"}}
    return metrics, [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in result["history"]]


def test_paper_config_and_validation():
    paper = RetrainConfig.paper()
    assert (paper.C, paper.layers, paper.epochs, paper.warmup_epochs, paper.batch_size) == (36, 20, 600, 5, 96)
    assert (paper.lr, paper.weight_decay, paper.auxiliary_weight, paper.drop_path_prob) == (0.025, 3e-4, 0.4, 0.2)
    assert paper.nesterov and paper.momentum == 0.9 and paper.grad_clip == 0 and paper.cutout == 16
    with pytest.raises(ValueError, match="warmup_epochs"):
        dataclasses.replace(TINY, warmup_epochs=3)
    with pytest.raises(ValueError, match="drop_path_prob"):
        dataclasses.replace(TINY, drop_path_prob=1.0)


def test_lr_schedule_warms_up_per_iteration_then_cosine_per_epoch():
    paper, spe = RetrainConfig.paper(), 100
    assert lr_at(0, spe, paper) == 0.0  # AutoDL's first step runs at 0
    assert lr_at(50, spe, paper) == pytest.approx(0.025 * 0.5 / 5)
    assert lr_at(4 * spe + 99, spe, paper) == pytest.approx(0.025 * 4.99 / 5)
    assert lr_at(5 * spe, spe, paper) == pytest.approx(0.025)  # cosine starts at the peak
    assert lr_at(5 * spe + 37, spe, paper) == lr_at(5 * spe, spe, paper)  # constant within an epoch
    assert lr_at(302 * spe + 10, spe, paper) == pytest.approx(0.025 * 0.5 * (1 + math.cos(math.pi * 297 / 595)))
    last = lr_at(599 * spe + 99, spe, paper)
    assert 0 < last < 1e-6 * 0.025 * 100  # last epoch: almost 0, never negative
    # The tiny config: epoch 0 warms up over 3 steps, epochs 1 and 2 follow the cosine over 2 epochs.
    assert [lr_at(s, 3, TINY) for s in range(9)] == pytest.approx(
        [0.0, 0.05 / 3, 0.1 / 3, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025]
    )


def test_drop_path_ramps_linearly():
    paper = RetrainConfig.paper()
    assert [drop_path_at(e, paper) for e in (0, 300, 599)] == pytest.approx([0.0, 0.1, 0.2 * 599 / 600])


def test_auxiliary_loss_is_weighted_into_training(arrays):
    torch.manual_seed(0)
    model = build_network(load_named_genotype("DARTS_V2"), TINY).train()
    x = torch.randn(8, 3, 32, 32)
    y = torch.as_tensor(arrays.train_y[:8])
    logits, logits_aux = model(x)
    assert logits_aux is not None
    plain = training_loss(logits, logits_aux, y, 0.0)
    weighted = training_loss(logits, logits_aux, y, 0.4)
    expected = plain + 0.4 * torch.nn.functional.cross_entropy(logits_aux, y)
    assert weighted.item() == pytest.approx(expected.item()) and weighted.item() != pytest.approx(plain.item())
    assert build_network(load_named_genotype("DARTS_V2"), dataclasses.replace(TINY, auxiliary_weight=0)) \
        .auxiliary_head is None


def test_resume_matches_uninterrupted_run_and_history_is_complete(arrays, tmp_path):
    full = retrain(arrays, tmp_path / "a")
    assert full["finished"]
    history = full["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["lr"] for r in history] == pytest.approx([0.0, 0.05, 0.025])
    assert [r["drop_path"] for r in history] == pytest.approx([0.0, 0.2 / 3, 0.4 / 3])
    assert all(math.isfinite(r["train_loss"]) and r["images_per_s"] > 0 for r in history)
    metrics = full["metrics"]
    assert metrics["final_test_acc"] == history[-1]["test_acc"]
    assert metrics["best_test_acc"] == max(r["test_acc"] for r in history)
    assert metrics["final_test_error"] == pytest.approx(100 - metrics["final_test_acc"])
    assert metrics["cost_unit"] == "CPU-hours" and metrics["cost_hours"] > 0

    stopped = retrain(arrays, tmp_path / "b", stop_after_epochs=1)
    assert stopped["finished"] is False and stopped["epochs_done"] == 1
    resumed = retrain(arrays, tmp_path / "b")
    assert strip_timing(resumed) == strip_timing(full)

    no_aux = retrain(arrays, tmp_path / "c", dataclasses.replace(TINY, epochs=2, auxiliary_weight=0.0))
    assert no_aux["history"][0]["train_loss"] != pytest.approx(history[0]["train_loss"])


def test_corrupt_checkpoint_is_an_error(arrays, tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        retrain(arrays, tmp_path)


def test_nan_loss_names_epoch_and_step_and_keeps_last_checkpoint(arrays, tmp_path, monkeypatch):
    import isdarts.train.retrain as retrain_module

    good_lr = retrain_module.lr_at
    # Epoch 1 trains normally; from epoch 2 on the lr explodes, so step 2 of epoch 2 sees a non-finite loss.
    monkeypatch.setattr(retrain_module, "lr_at", lambda step, spe, cfg: good_lr(step, spe, cfg) if step < spe else 1e30)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step \d+"):
        retrain(arrays, tmp_path)
    kept = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert kept["epochs_done"] == 1 and len(kept["history"]) == 1

    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step \d+"):
        retrain(arrays, tmp_path / "fresh", dataclasses.replace(TINY, warmup_epochs=0, lr=1e30))
    assert not (tmp_path / "fresh" / CHECKPOINT_NAME).exists()  # nothing good to keep, nothing bad written


def test_darts_v2_paper_network_has_3_3m_params(arrays, tmp_path):
    result = retrain(arrays, tmp_path, RetrainConfig.paper(), stop_after_epochs=0)
    assert result["finished"] is False and result["epochs_done"] == 0
    assert result["params_m"] == pytest.approx(3.3, abs=0.1)


def test_a_checkpoint_of_other_code_is_not_resumed(arrays, tmp_path, monkeypatch):
    from isdarts.train import retrain as retrain_module

    retrain(arrays, tmp_path, stop_after_epochs=1)
    resumed = retrain(arrays, tmp_path, stop_after_epochs=2)
    assert resumed["epochs_done"] == 2  # same code: resumed after epoch 1
    monkeypatch.setattr(retrain_module, "code_fingerprint", lambda *_: "another-version")
    assert retrain(arrays, tmp_path, stop_after_epochs=1)["epochs_done"] == 1  # started afresh
