"""Train a DARTS-space genotype from scratch on CIFAR-10 (spec §2, "CIFAR-10 evaluation network"), or on another
CIFAR-format dataset (CIFAR-100, SVHN), its images normalised with that dataset's own statistics.

Follows AutoDL's `basic-main.sh` recipe: SGD nesterov, linear warm-up per iteration then a per-epoch
cosine, auxiliary loss, drop path ramped linearly with the epoch, cutout. Like the search loop, a
killed run resumes from its per-epoch checkpoint and ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from isdarts.config.train import RetrainConfig
from isdarts.data.cifar import CifarArrays
from isdarts.data.device_loader import DeviceImages
from isdarts.spaces.darts.genotype import DartsGenotype
from isdarts.spaces.darts.network import NetworkCIFAR, count_parameters_m
from isdarts.train.checkpoint import code_fingerprint, fingerprint
from isdarts.train.epochs import EpochLoop, Record, evaluate
from isdarts.train.preempt import StepControl
from isdarts.train.runtime import Stopwatch, check_finite, make_deterministic, make_generator, resolve_device, run_cost

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "retrain_last.pt"
# The modules that decide a retrain's numbers: a checkpoint written by other versions of them is not resumed,
# so a code change that makes DVC re-run the stage trains afresh instead of returning the old finished run.
RESULT_MODULES = (
    "isdarts.train.retrain", "isdarts.train.epochs", "isdarts.train.graphs", "isdarts.spaces.darts.network",
    "isdarts.spaces.darts.ops",
    "isdarts.spaces.darts.genotype", "isdarts.spaces.common", "isdarts.data.device_loader", "isdarts.train.runtime",
    "isdarts.train.preempt", "isdarts.data.datasets",  # the normalisation statistics moved there from device_loader
)
TIMING_KEYS = ("images_per_s", "epoch_seconds")


def lr_at(step: int, steps_per_epoch: int, cfg: RetrainConfig) -> float:
    """Learning rate for global step `step` (0-based), AutoDL's warm-up + cosine.

    Warm-up (epoch e < W): lr * (e + i / steps_per_epoch) / W, updated every iteration i; as in AutoDL
    the very first step runs at 0. Afterwards the cosine is per epoch:
    lr * (1 + cos(pi * (e - W) / (E - W))) / 2, which reaches 0 only after the last epoch.
    AutoDL computes the same cosine (T_max = E - W) but clamps the last W epochs to exactly 0 (its
    max_epochs is E - W, spec §2 [C] quirk); we keep the cosine there instead, a difference below
    2e-4 * lr for the paper's 600 epochs, so the schedule means what the config says.
    """
    epoch, i = divmod(step, steps_per_epoch)
    w = cfg.warmup_epochs
    if epoch < w:
        return cfg.lr * (epoch + i / steps_per_epoch) / w
    epoch = min(epoch, cfg.epochs - 1)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - w) / (cfg.epochs - w)))


def drop_path_at(epoch: int, cfg: RetrainConfig) -> float:
    """Drop-path probability for 0-based `epoch`: the linear ramp prob * epoch / epochs (0 in the first epoch)."""
    return cfg.drop_path_prob * epoch / cfg.epochs


def aux_map_size(image_size: int) -> int:
    """Side of the feature map the auxiliary head reads: the input after two stride-2 reductions (ceil)."""
    return (image_size + 3) // 4  # ceil(ceil(s / 2) / 2) == ceil(s / 4)


def check_input_size(cfg: RetrainConfig, image_size: int) -> None:
    """The auxiliary head (5x5 pool, stride 3, then a 2x2 conv) needs at least an 8x8 map: 32x32 inputs."""
    if cfg.auxiliary_weight > 0 and aux_map_size(image_size) < 8:
        raise ValueError(
            f"RetrainConfig.auxiliary_weight = {cfg.auxiliary_weight} needs 32x32 images (the auxiliary head "
            f"reads an 8x8 map), but the images are {image_size}x{image_size}; set auxiliary_weight to 0 "
            f"for downsampled images or train at image_size 32"
        )


def build_network(genotype: DartsGenotype, cfg: RetrainConfig, num_classes: int = 10) -> NetworkCIFAR:
    return NetworkCIFAR(
        genotype, C=cfg.C, num_classes=num_classes, layers=cfg.layers, auxiliary=cfg.auxiliary_weight > 0
    )


def training_loss(
    logits: torch.Tensor, logits_aux: torch.Tensor | None, y: torch.Tensor, auxiliary_weight: float
) -> torch.Tensor:
    """Cross-entropy of the main head plus the weighted auxiliary one (what AutoDL optimises and logs)."""
    loss = F.cross_entropy(logits, y)
    if logits_aux is not None and auxiliary_weight > 0:
        loss = loss + auxiliary_weight * F.cross_entropy(logits_aux, y)
    return loss


def arrays_fingerprint(arrays: CifarArrays) -> str:
    """A content hash of the data, so a checkpoint is never resumed on other images."""
    h = hashlib.blake2b(digest_size=8)
    for a in (arrays.train_x, arrays.train_y, arrays.test_x, arrays.test_y):
        h.update(str((a.shape, a.dtype)).encode())
        h.update(memoryview(a).cast("B") if a.flags.c_contiguous else a.tobytes())
    return h.hexdigest()


def retrain_cifar(
    genotype: DartsGenotype,
    arrays: CifarArrays,
    cfg: RetrainConfig,
    *,
    device: torch.device | str,
    seed: int,
    checkpoint_dir: Path,
    progress: bool = False,
    stop_after_epochs: int | None = None,
    on_start: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every_s: float | None = None,
) -> dict[str, Any]:
    """Train (or resume) `genotype` on `arrays`; returns metrics and the per-epoch history.

    A SIGTERM or SIGINT stops it at the next step with a checkpoint (Preempted); `checkpoint_every_s` writes
    one inside long epochs too. A resume continues from that step and ends as an uninterrupted run.

    `stop_after_epochs` ends the call after that many epochs in total (checkpoint written), as a kill
    would; the result is then `{"finished": False, "epochs_done", "params_m"}` and the next call resumes.
    `on_start(extra)` runs once before training with the `extra` dict of the checkpoint resumed from ({} when
    starting afresh); what it returns is stored in every later checkpoint (an MLflow run id, so a resumed run
    logs into the same MLflow run). `on_epoch(record)` runs after each epoch, before its checkpoint is written.
    Raises NonFiniteLossError (epoch and step named) when the loss stops being finite.
    """
    check_input_size(cfg, arrays.train_x.shape[-1])
    device = resolve_device(device) if isinstance(device, str) else device
    # The arrays' own statistics (CIFAR-10's for CIFAR-10, as always), never a default meant for another dataset.
    train = DeviceImages(arrays.train_x, arrays.train_y, device, arrays.mean, arrays.std)
    test = DeviceImages(arrays.test_x, arrays.test_y, device, arrays.mean, arrays.std)
    make_deterministic(seed)
    model = build_network(genotype, cfg, num_classes=len(arrays.classes)).to(device)
    params_m = count_parameters_m(model, exclude_auxiliary=True)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
    )
    gen = make_generator(device, seed)
    settings = {
        "retrain": dataclasses.asdict(cfg), "genotype": genotype.to_json(), "seed": seed,
        "data": arrays_fingerprint(arrays), "device": device.type, "code": code_fingerprint(RESULT_MODULES),
    }
    loop = EpochLoop(
        name=f"retrain seed {seed}", epochs=cfg.epochs, checkpoint_path=Path(checkpoint_dir) / CHECKPOINT_NAME,
        key=fingerprint(settings), state={"model": model, "optimizer": optimizer}, generators={"data": gen},
        progress=progress, stop_after_epochs=stop_after_epochs, on_start=on_start, on_epoch=on_epoch,
        checkpoint_every_s=checkpoint_every_s,
    )
    stopped = {"finished": False, "params_m": params_m}
    if not loop.start():
        return {**stopped, "epochs_done": loop.epochs_done}
    model.train()
    if not loop.run(lambda epoch, steps: _train_epoch(model, optimizer, train, test, gen, cfg, epoch, seed, steps)):
        return {**stopped, "epochs_done": loop.epochs_done}
    return {"finished": True, "metrics": _final_metrics(loop.history, cfg, seed, params_m, loop.elapsed_s, device),
            "history": loop.history}


def _train_epoch(
    model: NetworkCIFAR, optimizer: torch.optim.Optimizer, train: DeviceImages, test: DeviceImages,
    gen: torch.Generator, cfg: RetrainConfig, epoch: int, seed: int, steps: StepControl,
) -> Record:
    """One epoch of training (from `steps.start` on, when resumed inside it), then the test pass; returns the
    epoch's history record."""
    n_batches = train.num_batches(cfg.batch_size)
    model.drop_path_prob = drop_path_at(epoch, cfg)
    clock = Stopwatch(train.device)
    step_losses, correct = steps.state(
        lambda: (torch.zeros(n_batches, device=train.device), torch.zeros((), dtype=torch.int64, device=train.device))
    )
    batches = steps.batches(
        lambda: train.batches(cfg.batch_size, augment=True, shuffle=True, generator=gen, cutout=cfg.cutout), gen
    )
    for step, (x, y) in enumerate(batches, start=steps.start):
        lr = lr_at(epoch * n_batches + step, n_batches, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits, logits_aux = model(x)
        loss = training_loss(logits, logits_aux, y, cfg.auxiliary_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        # Kept on the device; reading them every step would sync the host each time.
        step_losses[step] = loss.detach()
        correct += (logits.detach().argmax(1) == y).sum()
        if (step + 1) % cfg.log_every == 0 or step + 1 == n_batches:
            check_finite(step_losses[: step + 1], epoch, "retraining", "Lower the learning rate or check the data.")
        steps.step_done(step, (step_losses, correct))
    train_seconds = clock.elapsed()
    test_loss, test_acc = evaluate(model, test, cfg.batch_size)
    record = {
        "epoch": epoch + 1,
        "lr": lr_at(epoch * n_batches, n_batches, cfg),  # at the epoch's first step
        "drop_path": model.drop_path_prob,
        "train_loss": step_losses.mean().item(),
        "train_acc": 100.0 * correct.item() / len(train),
        "test_loss": test_loss,
        "test_acc": test_acc,
        "images_per_s": len(train) / train_seconds,
        "epoch_seconds": clock.elapsed(),
    }
    log.info(
        "retrain seed %d epoch %d/%d  lr %.5f  drop %.3f  train loss %.4f acc %.2f  test acc %.2f  %.0f img/s",
        seed, epoch + 1, cfg.epochs, record["lr"], record["drop_path"], record["train_loss"],
        record["train_acc"], test_acc, record["images_per_s"],
    )
    return record


def _final_metrics(
    history: list[dict[str, Any]], cfg: RetrainConfig, seed: int, params_m: float, elapsed: float,
    device: torch.device,
) -> dict[str, Any]:
    """The final-epoch result, with the best epoch alongside (the official log reports only the best)."""
    final = history[-1]
    best = max(history, key=lambda r: r["test_acc"])  # first of equals: the earliest epoch
    return {
        "seed": seed,
        "epochs": cfg.epochs,
        "params_m": params_m,
        "final_test_acc": final["test_acc"],
        "final_test_error": 100.0 - final["test_acc"],
        "final_train_loss": final["train_loss"],
        "best_test_acc": best["test_acc"],
        "best_test_error": 100.0 - best["test_acc"],
        "best_epoch": best["epoch"],
        "images_per_s_mean": sum(r["images_per_s"] for r in history) / len(history),
        **run_cost(device, elapsed),
        "config": dataclasses.asdict(cfg),
    }
