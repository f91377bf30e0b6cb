"""Train a DARTS-space genotype on ImageNet in the mobile setting (spec §2), on one process or under torchrun.

The global batch is split evenly across ranks and gradients are averaged by DDP, so N ranks follow the same
optimisation as one process with the same global batch. Only rank 0 writes checkpoints and metrics. A killed run
resumes from its last checkpoint: one per epoch, one every `checkpoint_every_s`, and one at the step where a
SIGTERM or SIGINT stopped it (every rank stops at that step). Each image's augmentation is seeded by (seed, epoch,
image), so a run resumed inside an epoch ends as an uninterrupted one. The pipeline runs this through
`isdarts.pipeline.imagenet.transfer_run`; the module entry below trains a shipped genotype on any tree:

    torchrun --nproc_per_node=8 -m isdarts.train.imagenet --root /data/imagenet --out runs/imagenet
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from isdarts.config.train import ImagenetConfig
from isdarts.data.imagefolder import ResumableOrder, SeededImages, check_imagefolder, imagenet_transforms
from isdarts.errors import Preempted
from isdarts.spaces.darts.genotype import DartsGenotype, load_named_genotype
from isdarts.spaces.darts.network import NetworkImageNet, count_flops_m, count_parameters_m
from isdarts.train import distributed as ddp
from isdarts.train.checkpoint import code_fingerprint, fingerprint
from isdarts.train.epochs import EpochLoop, Record, write_outputs
from isdarts.train.preempt import StepControl
from isdarts.train.runtime import Stopwatch, check_finite, make_deterministic, resolve_device, run_cost

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "imagenet_last.pt"
# As for retraining: a checkpoint of other code is not resumed (see isdarts.train.retrain.RESULT_MODULES).
RESULT_MODULES = (
    "isdarts.train.imagenet", "isdarts.train.epochs", "isdarts.train.graphs", "isdarts.spaces.darts.network",
    "isdarts.spaces.darts.ops",
    "isdarts.spaces.darts.genotype", "isdarts.spaces.common", "isdarts.data.imagefolder", "isdarts.train.distributed",
)


def check_input_size(cfg: ImagenetConfig) -> None:
    """The auxiliary head (5x5 pool, stride 2, then a 2x2 conv) needs a 7x7 map; three stride-2 stem convs and
    two reduction cells divide the side by 32 (rounding up), so it needs images of at least 193 pixels."""
    side = (cfg.image_size + 31) // 32
    if cfg.auxiliary_weight > 0 and side < 7:
        raise ValueError(
            f"ImagenetConfig.auxiliary_weight = {cfg.auxiliary_weight} needs images of at least 193 pixels (the "
            f"auxiliary head reads a 7x7 map at 224), but image_size = {cfg.image_size} gives {side}x{side}; "
            f"set auxiliary_weight to 0 for small images"
        )


def lr_at(step: int, steps_per_epoch: int, cfg: ImagenetConfig) -> float:
    """Linear warm-up per iteration over `warmup_epochs`, then a per-epoch cosine to 0 over the rest."""
    epoch, i = divmod(step, steps_per_epoch)
    w = cfg.warmup_epochs
    if epoch < w:
        return cfg.lr * (epoch + (i + 1) / steps_per_epoch) / w  # +1: the first step already moves
    epoch = min(epoch, cfg.epochs - 1)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - w) / (cfg.epochs - w)))


def smoothed_loss(
    logits: torch.Tensor, logits_aux: torch.Tensor | None, y: torch.Tensor, cfg: ImagenetConfig
) -> torch.Tensor:
    """Label-smoothed cross-entropy of the main head plus the weighted auxiliary one (DARTS smooths both)."""
    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    if logits_aux is not None and cfg.auxiliary_weight > 0:
        loss = loss + cfg.auxiliary_weight * F.cross_entropy(logits_aux, y, label_smoothing=cfg.label_smoothing)
    return loss


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, n_total: int) -> dict[str, float]:
    """Top-1 / top-5 error (%) over the whole split; each rank scores its shard and the counts are summed."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, top-1 hits, top-5 hits
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits, _ = model(x)
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices == y[:, None]
        sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
        sums[1] += hits[:, 0].sum()
        sums[2] += hits.any(dim=1).sum()
    model.train(was_training)
    ddp.all_reduce_sum(sums)
    loss, top1, top5 = (sums / n_total).tolist()
    return {"val_loss": loss, "top1_error": 100.0 * (1 - top1), "top5_error": 100.0 * (1 - top5)}


def _loaders(
    root: Path, cfg: ImagenetConfig, info: ddp.DistInfo, seed: int, device: torch.device
) -> tuple[Dataset, Dataset, DataLoader, DataLoader]:
    from torchvision.datasets import ImageFolder  # lazily, like imagenet_transforms: a slow import

    local_batch = ddp.per_rank_batch(cfg.batch_size, info.world_size)
    train_set = ImageFolder(str(root / "train"), imagenet_transforms(cfg.augment, cfg.image_size))
    val_set = ImageFolder(str(root / "val"), imagenet_transforms(False, cfg.image_size))
    order = ResumableOrder(ddp.train_sampler(train_set, info, seed=seed))
    common = {"num_workers": cfg.workers, "pin_memory": device.type == "cuda", "persistent_workers": cfg.workers > 0}
    # drop_last keeps every step at the full global batch, so the optimisation does not depend on the world size.
    # Each loader seeds its workers from its own generator. From the global stream, the draw would come when
    # the loader's workers start: in the first epoch of an uninterrupted run but the resumed epoch of a resumed
    # one (persistent workers start once), shifting drop path's draws from there on.
    train_loader = DataLoader(
        SeededImages(train_set, seed), batch_size=local_batch, sampler=order, drop_last=True,
        generator=torch.Generator().manual_seed(seed), **common,
    )
    val_loader = DataLoader(ddp.eval_shard(val_set, info), batch_size=local_batch, shuffle=False,
                            generator=torch.Generator().manual_seed(seed), **common)
    return train_set, val_set, train_loader, val_loader


def _global_mean(step_losses: torch.Tensor) -> torch.Tensor:
    """The global-batch loss of each step: equal local batches, so the mean of the ranks' means."""
    return ddp.all_reduce_sum(step_losses.clone()).div_(ddp.world_size())


def _train_epoch(
    net: nn.Module, optimizer: torch.optim.Optimizer, train_loader: DataLoader, val_loader: DataLoader,
    n_val: int, bn_mode: str, cfg: ImagenetConfig, epoch: int, steps: StepControl,
) -> Record:
    """One epoch on this rank's shard (from `steps.start` on, when resumed inside it), then the validation
    pass; returns the epoch's (global) history record."""
    dev = next(net.parameters()).device
    n_steps = len(train_loader)
    train_loader.sampler.set_epoch(epoch, skip=steps.start * train_loader.batch_size)  # type: ignore[attr-defined]
    clock = Stopwatch(dev)
    net.train()
    if bn_mode == "frozen":
        _freeze_bn(net)
    # An in-epoch checkpoint keeps the global losses of the steps done (the same on every rank), so the
    # rank average at the epoch's end leaves them as they are.
    (step_losses,) = steps.state(lambda: (torch.zeros(n_steps, dtype=torch.float64, device=dev),))
    for step, (x, y) in enumerate(train_loader, start=steps.start):
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch * n_steps + step, n_steps, cfg)
        logits, logits_aux = net(x)
        loss = smoothed_loss(logits, logits_aux, y, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step_losses[step] = loss.detach()
        steps.step_done(step, lambda: (_global_mean(step_losses),))
    step_losses = _global_mean(step_losses)  # one sync per epoch
    check_finite(step_losses, epoch, "ImageNet training", "Lower the learning rate or check the data.")
    train_seconds = clock.elapsed()
    record: Record = {
        "epoch": epoch + 1, "lr": lr_at(epoch * n_steps, n_steps, cfg), "train_loss": step_losses.mean().item(),
        **evaluate(net, val_loader, dev, n_val),
        # global: every rank trains in step
        "images_per_s": (n_steps - steps.start) * cfg.batch_size / train_seconds,
    }
    record["epoch_seconds"] = clock.elapsed()
    if cfg.record_step_losses:
        record["step_losses"] = step_losses.tolist()
    if ddp.is_main():
        log.info("epoch %d/%d  lr %.5f  train loss %.4f  top-1 err %.2f  top-5 err %.2f", epoch + 1, cfg.epochs,
                 record["lr"], record["train_loss"], record["top1_error"], record["top5_error"])
    return record


def train_imagenet(
    genotype: DartsGenotype,
    root: str | Path,
    cfg: ImagenetConfig,
    *,
    checkpoint_dir: str | Path,
    seed: int,
    device: str = "auto",
    manifest: dict[str, Any] | None = None,
    on_start: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every_s: float | None = None,
) -> dict[str, Any] | None:
    """Train (or resume) `genotype` on the ImageFolder tree at `root`; rank 0 returns the metrics, others None.

    The metrics carry the per-epoch `history`; nothing but the checkpoint is written here (see
    `isdarts.train.epochs.write_outputs`).
    Call inside an initialised process group (see `main`) for multi-process runs; works as-is in one process.
    `manifest` is `check_imagefolder(root)` when the caller already has it (the check lists every file).
    On rank 0 only: `on_start(extra)` runs before training with the `extra` dict of the checkpoint resumed from
    ({} when fresh) and its result is stored in later checkpoints; `on_epoch(record)` runs after each epoch.
    Raises Preempted after a SIGTERM or SIGINT, on every rank, once the step's checkpoint is written.
    """
    check_input_size(cfg)
    root, checkpoint_dir = Path(root), Path(checkpoint_dir)
    info = ddp.current_info()
    dev = resolve_device(device)
    if dev.type == "cuda" and info.enabled:
        dev = torch.device("cuda", torch.cuda.current_device())
    if manifest is None:
        manifest = check_imagefolder(root)
    train_set, val_set, train_loader, val_loader = _loaders(root, cfg, info, seed, dev)

    make_deterministic(seed)  # same seed on every rank: identical initial weights (DDP also broadcasts them)
    model = NetworkImageNet(
        genotype, C=cfg.C, num_classes=len(train_set.classes), layers=cfg.layers,
        auxiliary=cfg.auxiliary_weight > 0, drop_path_prob=cfg.drop_path_prob,
    )
    params_m = count_parameters_m(model, exclude_auxiliary=True)
    madds_m = count_flops_m(model, cfg.flops_size)
    model = model.to(dev)
    bn_mode = cfg.bn
    if bn_mode == "sync" and info.enabled:
        if dev.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            bn_mode = "local"  # SyncBatchNorm is GPU-only; per-rank statistics differ slightly from one process
            if info.rank == 0:
                log.warning("SyncBatchNorm needs CUDA; BN uses per-rank batch statistics on this CPU run")
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
    )
    settings = {
        "imagenet": dataclasses.asdict(cfg), "genotype": genotype.to_json(), "seed": seed,
        "data": {"classes": manifest["classes"], "counts": manifest["counts"]},
        "code": code_fingerprint(RESULT_MODULES),
    }
    loop = EpochLoop(
        name=f"ImageNet seed {seed} (rank {info.rank})", epochs=cfg.epochs,
        checkpoint_path=checkpoint_dir / CHECKPOINT_NAME, key=fingerprint(settings),
        state={"model": model, "optimizer": optimizer}, on_start=on_start, on_epoch=on_epoch,
        writer=info.rank == 0, barrier=ddp.barrier, agree=lambda value: ddp.max_over_ranks(value, dev),
        checkpoint_every_s=checkpoint_every_s,
    )
    loop.start()
    net: nn.Module = model
    if info.enabled:
        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if len(train_loader) == 0:
        raise ValueError(f"{root}/train has {len(train_set)} images, fewer than one global batch of {cfg.batch_size}")
    loop.run(lambda epoch, steps: _train_epoch(net, optimizer, train_loader, val_loader, len(val_set), bn_mode,
                                               cfg, epoch, steps))

    if info.rank != 0:
        return None
    history, elapsed = loop.history, loop.elapsed_s
    final = history[-1]
    return {
        "top1_error": final["top1_error"], "top5_error": final["top5_error"], "params_m": params_m,
        "madds_m": madds_m, "madds_input": cfg.flops_size, "epochs": cfg.epochs, "seed": seed,
        "world_size": info.world_size, "bn": bn_mode, "config": dataclasses.asdict(cfg), "history": history,
        "data": {"root": str(root), "split_totals": manifest["split_totals"], "classes": len(manifest["classes"])},
        **run_cost(dev, elapsed),
    }


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, ImagenetConfig]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="ImageFolder tree with train/ and val/")
    p.add_argument("--out", required=True, help="folder for metrics.json and history.json")
    p.add_argument("--checkpoint-dir", default=None, help="defaults to --out")
    p.add_argument("--genotype", default="ISDARTS", help="a named genotype (isdarts/spaces/genotypes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--checkpoint-every-minutes", type=float, default=30.0,
                   help="also checkpoint inside an epoch this often (0: at epoch ends only)")
    paper = ImagenetConfig.paper()
    for f in dataclasses.fields(ImagenetConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=getattr(paper, f.name))
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            p.add_argument(flag, type=kind, default=getattr(paper, f.name))
    args = p.parse_args(argv)
    cfg = ImagenetConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ImagenetConfig)})
    return args, cfg


def main(argv: list[str] | None = None) -> None:
    args, cfg = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    dev = resolve_device(args.device)
    ddp.init_from_env(ddp.default_backend(dev))
    try:
        result = train_imagenet(
            load_named_genotype(args.genotype), args.root, cfg, checkpoint_dir=args.checkpoint_dir or args.out,
            seed=args.seed, device=args.device, checkpoint_every_s=args.checkpoint_every_minutes * 60.0 or None,
        )
        if result is not None:
            history = result.pop("history")
            write_outputs(Path(args.out), result, history)
    except Preempted as stop:
        if ddp.is_main():
            log.warning("%s", stop)
        raise SystemExit(128 + stop.signum) from None  # the shell's code for "ended by this signal"
    finally:
        ddp.cleanup()


if __name__ == "__main__":
    main()
