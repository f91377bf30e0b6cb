"""ImageFolder checks, DDP batch splitting, and the key property: 2 ranks train exactly like 1 process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from isdarts.config.train import ImagenetConfig
from isdarts.data.imagefolder import check_imagefolder, imagenet_transforms, make_tiny_imagefolder
from isdarts.errors import DataError, Preempted
from isdarts.spaces.darts.genotype import load_named_genotype
from isdarts.train import imagenet as imagenet_module
from isdarts.train.distributed import per_rank_batch
from isdarts.train.epochs import HISTORY_NAME, METRICS_NAME
from isdarts.train.imagenet import check_input_size, train_imagenet

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("cat", "dog")
# Tiny, deterministic settings: no augmentation, no auxiliary head (it needs >= 7x7 maps, i.e. ~224 px input),
# BN on running statistics so a sample's output does not depend on which rank's batch it is in.
TINY = {
    "C": 4, "layers": 3, "epochs": 2, "warmup_epochs": 1, "batch_size": 8, "image_size": 32, "flops_size": 32,
    "auxiliary_weight": 0.0, "augment": False, "bn": "frozen", "workers": 0, "record_step_losses": True,
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tree(root: Path, n_train: int = 8, n_val: int = 5) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        labels = np.repeat(np.arange(len(CLASSES)), n)
        x = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
        x[labels == 1, 0] //= 2  # a colour cue, so the classes differ
        make_tiny_imagefolder(root, x, labels, CLASSES, n, split=split)
    return root


def test_check_imagefolder_manifest(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", n_train=3, n_val=2)
    m = check_imagefolder(root)
    assert m["classes"] == list(CLASSES)
    assert m["counts"] == {"train": {"cat": 3, "dog": 3}, "val": {"cat": 2, "dog": 2}}
    assert m["split_totals"] == {"train": 6, "val": 4} and m["total"] == 10


def test_check_imagefolder_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=r"nope.*does not exist.*<root>/train/<class>"):
        check_imagefolder(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty.*is empty"):
        check_imagefolder(empty)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "img.png").write_bytes(b"x")
    with pytest.raises(DataError, match=r"flat.*not an ImageFolder tree"):
        check_imagefolder(flat)
    root = _tree(tmp_path / "mismatch", n_train=1, n_val=1)
    (root / "val" / "dog").rename(root / "val" / "horse")
    with pytest.raises(DataError, match=r"mismatch.*differ.*only in train: \['dog'\].*only in val: \['horse'\]"):
        check_imagefolder(root)


def test_per_rank_batch() -> None:
    assert per_rank_batch(128, 8) == 16
    with pytest.raises(ValueError, match="world size 3 does not divide the batch 128"):
        per_rank_batch(128, 3)


def test_transforms_shapes() -> None:
    from PIL import Image

    img = Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8))
    assert imagenet_transforms(True, 32)(img).shape == (3, 32, 32)
    assert imagenet_transforms(False, 32)(img).shape == (3, 32, 32)


def test_paper_config_and_validation() -> None:
    cfg = ImagenetConfig.paper()
    assert (cfg.C, cfg.layers, cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay) == (48, 14, 250, 128, 0.1, 3e-5)
    with pytest.raises(ValueError, match="bn must be one of"):
        ImagenetConfig(bn="magic")
    check_input_size(cfg)  # 224: the auxiliary head reads a 7x7 map
    check_input_size(ImagenetConfig(image_size=193))
    with pytest.raises(ValueError, match="at least 193 pixels"):
        check_input_size(ImagenetConfig(image_size=192))
    check_input_size(ImagenetConfig(image_size=32, auxiliary_weight=0.0))


@pytest.mark.slow
def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree")
    genotype = load_named_genotype("ISDARTS")
    one = train_imagenet(genotype, root, ImagenetConfig(**TINY), checkpoint_dir=tmp_path / "one", seed=3)
    assert one is not None

    two_out = tmp_path / "two"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2",
        "-m", "isdarts.train.imagenet", "--root", str(root), "--out", str(two_out), "--seed", "3",
        "--device", "cpu", *flags,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]

    # Rank 0 alone writes: metrics, history, one checkpoint, nothing else.
    assert sorted(p.name for p in two_out.iterdir()) == sorted([METRICS_NAME, HISTORY_NAME, "imagenet_last.pt"])
    two = json.loads((two_out / METRICS_NAME).read_text())
    assert two["world_size"] == 2 and "history" not in two
    losses_one = [s for r in one["history"] for s in r["step_losses"]]
    losses_two = [s for r in json.loads((two_out / HISTORY_NAME).read_text())["epochs"] for s in r["step_losses"]]
    assert len(losses_one) == 4
    # Same global batches and averaged gradients; only the order of float sums differs (all-reduce vs one batch).
    np.testing.assert_allclose(losses_two, losses_one, rtol=1e-5, atol=1e-6)
    for key in ("top1_error", "top5_error", "params_m", "madds_m"):
        assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6)
    assert losses_one[0] != losses_one[-1]  # training actually moved the weights


def test_resume_from_finished_checkpoint_replays_metrics(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", n_train=4, n_val=2)
    genotype = load_named_genotype("ISDARTS")
    cfg = ImagenetConfig(**{**TINY, "epochs": 1, "warmup_epochs": 0})
    first = train_imagenet(genotype, root, cfg, checkpoint_dir=tmp_path / "c", seed=0)
    again = train_imagenet(genotype, root, cfg, checkpoint_dir=tmp_path / "c", seed=0)
    assert first is not None and again is not None
    assert again["history"] == first["history"]
    # The trainer writes only its checkpoint; metrics files are the caller's (transfer_run, main).
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["imagenet_last.pt"]


def _comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "images_per_s")} for r in history]


@pytest.mark.parametrize("workers", [0, 2])
def test_sigterm_inside_an_epoch_resumes_to_the_same_result(tmp_path: Path, monkeypatch, workers: int) -> None:
    """Preemption: a SIGTERM during step 2 of epoch 2 stops after that step with an in-epoch checkpoint; the
    resumed run ends as the uninterrupted one, augmentation and drop path included, however many loader
    workers there are (each image's augmentation is seeded by seed, epoch and image)."""
    root = _tree(tmp_path / "tree", n_train=12, n_val=2)  # 24 images, batch 8: 3 steps per epoch
    genotype = load_named_genotype("ISDARTS")
    # Three epochs, so the stop is not in the last: what the resumed run does after its first epoch counts too.
    cfg = ImagenetConfig(**{**TINY, "epochs": 3, "augment": True, "drop_path_prob": 0.3, "workers": workers,
                            "bn": "local"})
    whole = train_imagenet(genotype, root, cfg, checkpoint_dir=tmp_path / "whole", seed=1)
    assert whole is not None

    real_lr_at = imagenet_module.lr_at

    def lr_at_with_sigterm(step: int, steps_per_epoch: int, c: ImagenetConfig) -> float:
        if step == 4:  # epoch 2, step 2, while the step runs
            os.kill(os.getpid(), signal.SIGTERM)
        return real_lr_at(step, steps_per_epoch, c)

    monkeypatch.setattr(imagenet_module, "lr_at", lr_at_with_sigterm)
    with pytest.raises(Preempted, match="stopped by SIGTERM at step 2 of epoch 2"):
        train_imagenet(genotype, root, cfg, checkpoint_dir=tmp_path / "cut", seed=1)
    monkeypatch.setattr(imagenet_module, "lr_at", real_lr_at)
    saved = torch.load(tmp_path / "cut" / "imagenet_last.pt", weights_only=False)
    assert saved["in_epoch"]["step"] == 2 and saved["epochs_done"] == 1

    resumed = train_imagenet(genotype, root, cfg, checkpoint_dir=tmp_path / "cut", seed=1)
    assert resumed is not None
    assert _comparable(resumed["history"]) == _comparable(whole["history"])
    steps = [s for r in whole["history"] for s in r["step_losses"]]
    assert len(set(steps)) == len(steps) == 9  # every step trained on new (augmented) images


# Rank 1 alone receives the SIGTERM (as when a scheduler signals one node first); rank 0 must stop at the same step.
_SIGTERM_ON_RANK_1 = """
import os, signal, sys
from isdarts.train import imagenet

real_lr_at = imagenet.lr_at

def lr_at(step, steps_per_epoch, cfg):
    if step == 4 and os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGTERM)
    return real_lr_at(step, steps_per_epoch, cfg)

imagenet.lr_at = lr_at
imagenet.main(sys.argv[1:])
"""


@pytest.mark.slow
def test_two_ranks_stop_at_the_same_step_and_resume(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", n_train=12, n_val=2)
    genotype = load_named_genotype("ISDARTS")
    tiny = {**TINY, "augment": True}
    one = train_imagenet(genotype, root, ImagenetConfig(**tiny), checkpoint_dir=tmp_path / "one", seed=3)
    assert one is not None

    script = tmp_path / "sigterm_rank1.py"
    script.write_text(_SIGTERM_ON_RANK_1)
    out = tmp_path / "two"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in tiny.items()]
    args = ["--root", str(root), "--out", str(out), "--seed", "3", "--device", "cpu", *flags]
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cut = subprocess.run([*torchrun, str(script), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=180)
    assert cut.returncode != 0 and "stopped by SIGTERM at step 2 of epoch 2" in cut.stderr, cut.stderr[-3000:]
    saved = torch.load(out / "imagenet_last.pt", weights_only=False)
    assert saved["in_epoch"]["step"] == 2 and not (out / METRICS_NAME).exists()

    done = subprocess.run([*torchrun, "-m", "isdarts.train.imagenet", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((out / HISTORY_NAME).read_text())["epochs"]
    losses_one = [s for r in one["history"] for s in r["step_losses"]]
    losses_two = [s for r in two for s in r["step_losses"]]
    np.testing.assert_allclose(losses_two, losses_one, rtol=1e-5, atol=1e-6)
    assert [r["top1_error"] for r in two] == pytest.approx([r["top1_error"] for r in one["history"]], abs=1e-6)
