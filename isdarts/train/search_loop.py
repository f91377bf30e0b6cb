"""The search epoch loop, written once for every method: train, evaluate, end-of-epoch work, checkpoint.

A killed run resumes from its last per-epoch checkpoint and ends exactly as an uninterrupted one:
weights, optimiser, mask, history and every random-number stream are saved with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from isdarts.config import ConfigError, Nb201SearchConfig, Params, paper_mismatches
from isdarts.data.cifar import CifarArrays
from isdarts.data.device_loader import DeviceImages
from isdarts.search.isdarts_method import build_method
from isdarts.spaces.nb201_genotype import NB201_EDGES, NB201_OPS
from isdarts.train.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from isdarts.train.runtime import (
    Stopwatch,
    check_finite,
    cost_unit,
    describe_device,
    make_deterministic,
    make_generator,
    resolve_device,
    restore_rng,
    rng_state,
)

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "last.pt"
# The modules that decide a search's numbers (the sources dvc.yaml lists for the stage). A checkpoint
# written by other versions of them is not resumed: DVC re-runs the stage after a code change, and
# resuming a finished run would silently keep the old code's results.
RESULT_MODULES = (
    "isdarts.config", "isdarts.data.device_loader", "isdarts.spaces.nb201_genotype", "isdarts.spaces.nb201_ops",
    "isdarts.spaces.nb201_supernet", "isdarts.search.iim", "isdarts.search.shrink", "isdarts.search.isdarts_method",
    "isdarts.train.checkpoint", "isdarts.train.runtime", "isdarts.train.search_loop",
)


def code_fingerprint(modules: tuple[str, ...] = RESULT_MODULES) -> str:
    digest = hashlib.sha256()
    for name in modules:
        digest.update(Path(importlib.util.find_spec(name).origin).read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class SearchData:
    """The device-resident splits a search uses."""

    train: DeviceImages
    test: DeviceImages
    iim: DeviceImages
    iim_augment: bool
    kind: str  # "full" or "subset"


def split_search_data(
    train: DeviceImages, test: DeviceImages, cfg: Nb201SearchConfig, seed: int, kind: str
) -> SearchData:
    """Apply the IIM data choice (spec §3.2): the code's full training pass, or a held-out subset."""
    iim_cfg = cfg.iim
    if iim_cfg.source == "holdout_subset":
        if iim_cfg.n_samples >= len(train):
            raise ConfigError(
                f"params.yaml: nb201_search.iim.n_samples = {iim_cfg.n_samples} leaves no training data "
                f"({len(train)} training images)"
            )
        gen = make_generator(torch.device("cpu"), seed + 7919)
        weights_part, holdout = train.split(iim_cfg.n_samples, gen)
        return SearchData(weights_part, test, holdout, iim_augment=False, kind=kind)
    iim = train if iim_cfg.n_samples is None else train.subset(torch.arange(min(iim_cfg.n_samples, len(train))))
    return SearchData(train, test, iim, iim_augment=True, kind=kind)


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: DeviceImages, batch_size: int) -> tuple[float, float]:
    """Loss and accuracy (%) on a split, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=model.mask.device)
    correct = torch.zeros((), dtype=torch.int64, device=model.mask.device)
    for x, y in data.batches(batch_size, augment=False, shuffle=False, generator=None):
        _, logits = model(x)
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = len(data)
    return loss_sum.item() / n, 100.0 * correct.item() / n


def _epoch_metrics(record: dict[str, Any]) -> dict[str, float]:
    """Flatten one history record into MLflow metrics."""
    metrics = {k: record[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s")}
    alive = record["alive"]
    metrics["alive_ops"] = float(sum(map(sum, alive)))
    for e, edge in enumerate(NB201_EDGES):
        metrics[f"alive_ops/{edge}"] = float(sum(alive[e]))
        if record["iim"] is not None:
            for o, op in enumerate(NB201_OPS):
                value = record["iim"][e][o]
                if value is not None:  # None: the op was masked before this measurement
                    metrics[f"iim/{edge}/{op}"] = value
    return metrics


def run_nb201_search(
    params: Params,
    seed: int,
    arrays: CifarArrays,
    *,
    data_kind: str,
    data_fingerprint: str,
    checkpoint_dir: Path,
    tracker: Any = None,
    tracker_tags: dict[str, str] | None = None,
    progress: bool = True,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) one NB201 search; returns the genotype, metrics and history to be written.

    `stop_after_epochs` ends the call early after that many epochs in total (checkpoint written), as a
    kill would; the next call resumes.
    """
    cfg = params.nb201_search
    device = resolve_device(params.device)
    if params.profile == "paper" and data_kind != "full":
        raise ConfigError(
            "params.yaml: profile 'paper' needs the full, verified CIFAR-10, but data/prepared holds a subset; "
            "put CIFAR-10 in data.cifar10_root (or set data.download: true) and run `dvc repro -f prepare_data`"
        )
    train = DeviceImages(arrays.train_x, arrays.train_y, device)
    test = DeviceImages(arrays.test_x, arrays.test_y, device)
    data = split_search_data(train, test, cfg, seed, data_kind)
    make_deterministic(seed)
    method = build_method(cfg, num_classes=10, device=device)
    gens = {"data": make_generator(device, seed), "iim": make_generator(device, seed + 1)}
    settings = {
        "search": dataclasses.asdict(cfg), "seed": seed, "data": data_fingerprint, "device": device.type,
        "code": code_fingerprint(),
    }
    key = fingerprint(settings)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME
    state = load_checkpoint(ckpt_path, key)
    history: list[dict[str, Any]] = []
    elapsed, run_id, start_epoch = 0.0, None, 0
    if state is not None:
        method.load_state_dict(state["method"])
        restore_rng(state["rng"], gens)
        history, elapsed, run_id = state["history"], state["elapsed_s"], state.get("mlflow_run_id")
        start_epoch = state["epochs_done"]
        log.info("resuming seed %d from %s after epoch %d", seed, ckpt_path, start_epoch)
    if tracker is not None:
        run_id = tracker.start(
            run_name=f"nb201-{cfg.method}-seed{seed}",
            params={"search": dataclasses.asdict(cfg), "seed": seed, "device": str(device), "data": data_kind},
            tags=tracker_tags or {},
            resume_run_id=run_id,
        )

    def iim_batches():
        return data.iim.batches(
            cfg.iim.batch_size, augment=data.iim_augment, shuffle=False, generator=gens["iim"]
        )

    n_batches = data.train.num_batches(cfg.batch_size, drop_last=False)
    epochs = tqdm(
        range(start_epoch, cfg.epochs), initial=start_epoch, total=cfg.epochs, desc=f"seed {seed}",
        unit="epoch", disable=not progress, file=sys.stderr, dynamic_ncols=True,
    )
    for epoch in epochs:
        lr = method.set_epoch(epoch)
        clock = Stopwatch(device)
        step_losses = torch.zeros(n_batches, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        batches = data.train.batches(
            cfg.batch_size, augment=True, shuffle=cfg.shuffle, generator=gens["data"]
        )
        bar = tqdm(
            batches, total=n_batches, leave=False, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
            disable=not progress, file=sys.stderr, dynamic_ncols=True,
        )
        for step, (x, y) in enumerate(bar):
            loss, n_correct = method.train_step(x, y)
            step_losses[step] = loss
            correct += n_correct
            if (step + 1) % cfg.log_every == 0 or step + 1 == n_batches:
                check_finite(step_losses[: step + 1], epoch, "training", "Lower nb201_search.lr or check the data.")
                bar.set_postfix(loss=f"{step_losses[step].item():.3f}")
        train_seconds = clock.elapsed()
        test_loss, test_acc = evaluate(method.model, data.test, cfg.batch_size)
        end = method.end_epoch(epoch + 1, iim_batches)
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": step_losses.mean().item(),
            "train_acc": 100.0 * correct.item() / len(data.train),
            "test_loss": test_loss,
            "test_acc": test_acc,
            "images_per_s": len(data.train) / train_seconds,
            "epoch_seconds": clock.elapsed(),
            "alive": method.model.mask.int().tolist(),
            "genotype": method.genotype().to_arch_str(),
            **end,
        }
        history.append(record)
        elapsed += record["epoch_seconds"]
        log.info(
            "seed %d epoch %d/%d  lr %.4f  train loss %.4f acc %.2f  test acc %.2f  %.0f img/s%s",
            seed, epoch + 1, cfg.epochs, lr, record["train_loss"], record["train_acc"], test_acc,
            record["images_per_s"], f"  shrink step {end['shrink_step']}: pruned {end['pruned']}"
            if end["shrink_step"] is not None else "",
        )
        if tracker is not None:
            tracker.log_metrics(_epoch_metrics(record), step=epoch + 1)
        save_checkpoint(
            ckpt_path,
            {
                "epochs_done": epoch + 1, "method": method.state_dict(), "rng": rng_state(gens),
                "history": history, "elapsed_s": elapsed, "mlflow_run_id": run_id,
            },
            key,
        )
        if stop_after_epochs is not None and epoch + 1 >= stop_after_epochs and epoch + 1 < cfg.epochs:
            return {"finished": False, "epochs_done": epoch + 1}

    genotype = method.genotype()
    final = history[-1]
    mismatches = paper_mismatches(cfg)
    metrics = {
        "space": "nb201",
        "method": cfg.method,
        "seed": seed,
        "profile": params.profile,
        "paper_settings": not mismatches and data_kind == "full",
        "paper_mismatches": mismatches + ([] if data_kind == "full" else ["data: CIFAR-10 subset"]),
        "data_kind": data_kind,
        "arch_str": genotype.to_arch_str(),
        "epochs": cfg.epochs,
        "final_train_loss": final["train_loss"],
        "final_train_acc": final["train_acc"],
        "final_test_acc": final["test_acc"],
        "images_per_s_mean": sum(r["images_per_s"] for r in history) / len(history),
        "search_seconds": elapsed,
        "search_hours": elapsed / 3600.0,
        "cost_unit": cost_unit(device),
        "device_name": describe_device(device),
    }
    history_doc = {"space": "nb201", "method": cfg.method, "seed": seed, "edges": list(NB201_EDGES),
                   "ops": list(NB201_OPS), "epochs": history}
    return {
        "finished": True,
        "genotype": {**genotype.to_json(), "method": cfg.method, "seed": seed},
        "metrics": metrics,
        "history": history_doc,
        "mlflow_run_id": run_id,
    }

