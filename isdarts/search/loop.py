"""The search epoch loop, written once for every method and both spaces: train, evaluate, end-of-epoch
work, checkpoint.

IS-DARTS-style methods train the weights on every training image; bi-level methods (DARTS, Λ-DARTS,
S-DARTS) split the training set (AutoDL's 25k/25k) and pair each weight batch with a valid batch drawn
at random. A killed run resumes from its last per-epoch checkpoint and ends exactly as an uninterrupted
one: weights, optimisers, masks, α, history and every random-number stream are saved with it.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from isdarts.config.paper import paper_mismatches
from isdarts.config.search import SearchConfig
from isdarts.data.cifar import CifarArrays
from isdarts.data.device_loader import DeviceImages
from isdarts.data.downsample import reduce_cifar
from isdarts.errors import ConfigError, GenotypeError
from isdarts.registry import METHODS, space_spec
from isdarts.search.base import SearchMethod
from isdarts.search.speed import apply_speed, configure_backends, resolve_speed
from isdarts.search.trajectory import describe_cell, op_weights
from isdarts.spaces.space import Space
from isdarts.train.checkpoint import code_fingerprint, fingerprint
from isdarts.train.epochs import EpochLoop, Record, evaluate
from isdarts.train.graphs import BatchGraph
from isdarts.train.preempt import StepControl
from isdarts.train.runtime import (
    Stopwatch,
    check_finite,
    cost_unit,
    describe_device,
    make_deterministic,
    make_generator,
    resolve_device,
)

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "last.pt"
# The modules that decide a search's numbers (the sources dvc.yaml lists for the search stages), beside
# every method's own module (the methods table's) and the space's modules (its `Space.result_modules`). A
# checkpoint written by other versions of them is not resumed: DVC re-runs the stage after a code change,
# and resuming a finished run would silently keep the old code's results.
COMMON_RESULT_MODULES = (
    "isdarts.config.search", "isdarts.data.datasets", "isdarts.data.device_loader", "isdarts.data.downsample",
    "isdarts.search.base",
    "isdarts.search.iim", "isdarts.search.shrink", "isdarts.search.loop", "isdarts.search.speed",
    "isdarts.search.trajectory", "isdarts.spaces.common", "isdarts.spaces.fused", "isdarts.spaces.mixing",
    "isdarts.spaces.partial", "isdarts.spaces.space",
    "isdarts.train.checkpoint", "isdarts.train.epochs", "isdarts.train.graphs", "isdarts.train.preempt",
    "isdarts.train.runtime",
)


def result_modules(space: str) -> tuple[str, ...]:
    """The modules whose source decides a search's numbers on `space` (its checkpoint's code fingerprint)."""
    methods = tuple(dict.fromkeys(spec.module for spec in METHODS.values()))  # each method may build on another
    return COMMON_RESULT_MODULES + methods + space_spec(space).load().result_modules


@dataclass(frozen=True)
class SearchRun:
    """One search to run: its settings and seed, the data and device it runs on, where it checkpoints."""

    cfg: SearchConfig
    seed: int
    profile: str
    device: str  # "auto", "cpu", "cuda", "cuda:N"
    data_kind: str  # "full" or "subset"
    data_fingerprint: str
    checkpoint_dir: Path
    checkpoint_every_s: float | None = None  # also checkpoint inside long epochs this often
    extra_metrics: Mapping[str, Any] = field(default_factory=dict)  # merged into metrics.json


def build_method(
    cfg: SearchConfig, num_classes: int, device: torch.device, generator: torch.Generator | None = None
) -> SearchMethod:
    """The search method `cfg` names, with its space's supernet on `device`; `generator` seeds α's init."""
    space = space_spec(cfg.space).load()
    method_class = cfg.spec.method_class(cfg.space)
    # A method may need a supernet built its way (PC-DARTS: ops at 1/K of the channels).
    supernet_options = getattr(method_class, "supernet_options", None)
    extra = {} if supernet_options is None else supernet_options(cfg)
    model = space.build_supernet(cfg.C, cfg.N, num_classes, fused=cfg.fused_ops, **extra)
    # The speed settings (isdarts.search.speed): memory format, bf16 and compilation of the training forward.
    # The input batches follow the stem's weights into channels-last.
    plan = resolve_speed(cfg, device)
    configure_backends(plan)
    return method_class(apply_speed(model.to(device), plan), space, cfg, generator)


@dataclass
class SearchData:
    """The device-resident splits a search uses."""

    train: DeviceImages  # what the weights train on
    test: DeviceImages
    iim: DeviceImages | None
    iim_augment: bool
    valid: DeviceImages | None  # bi-level methods: the half α trains on
    kind: str  # "full" or "subset"


def reduce_arrays(arrays: CifarArrays, cfg: SearchConfig) -> CifarArrays:
    """The images a search sees: all of them at 32x32, or (small profiles) fewer and downsampled."""
    if cfg.image_size == 32 and cfg.train_images is None and cfg.test_images is None:
        return arrays
    try:
        return reduce_cifar(
            arrays, image_size=cfg.image_size, train_images=cfg.train_images, test_images=cfg.test_images
        )
    except ValueError as exc:
        raise ConfigError(f"params.yaml: {cfg.space}.search: {exc}") from None


def split_search_data(
    train: DeviceImages, test: DeviceImages, cfg: SearchConfig, seed: int, kind: str
) -> SearchData:
    """Apply the method's data use: a bi-level train/valid split, or the IIM data choice (spec §3.2)."""
    if cfg.bilevel:
        n_valid = len(train) - round(cfg.train_portion * len(train))
        if n_valid < 1 or n_valid >= len(train):
            raise ConfigError(
                f"params.yaml: train_portion = {cfg.train_portion} leaves an empty train or valid part "
                f"of {len(train)} training images"
            )
        # One fixed split for every seed, as AutoDL's split file: seeds vary the search, not the data.
        weights_part, valid = train.split(n_valid, make_generator(torch.device("cpu"), 0))
        return SearchData(weights_part, test, None, False, valid, kind)
    iim_cfg = cfg.iim
    if iim_cfg is None:
        # Single-level α methods (SNAS, DSNAS): every training image, or the share their `train_share(cfg)` asks
        # for, taken as the weight part of the bi-level methods' fixed split (their train half at 0.5).
        share = getattr(cfg.spec.method_class(cfg.space), "train_share", lambda _cfg: None)(cfg)
        if share is None:
            return SearchData(train, test, None, False, None, kind)
        weights_part, _ = train.split(len(train) - round(share * len(train)), make_generator(torch.device("cpu"), 0))
        return SearchData(weights_part, test, None, False, None, kind)
    if iim_cfg.source == "holdout_subset":
        if iim_cfg.n_samples >= len(train):
            raise ConfigError(
                f"params.yaml: {cfg.space} {cfg.method} iim.n_samples = {iim_cfg.n_samples} leaves no training "
                f"data ({len(train)} training images)"
            )
        gen = make_generator(torch.device("cpu"), seed + 7919)
        weights_part, holdout = train.split(iim_cfg.n_samples, gen)
        return SearchData(weights_part, test, holdout, False, None, kind)
    iim = train if iim_cfg.n_samples is None else train.subset(torch.arange(min(iim_cfg.n_samples, len(train))))
    return SearchData(train, test, iim, True, None, kind)


def epoch_metrics(record: dict[str, Any], space: Space) -> dict[str, float]:
    """Flatten one search history record into MLflow metrics (the pipeline's per-epoch tracking hook)."""
    metrics = {k: record[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s")}
    if record.get("arch_loss") is not None:
        metrics["arch_loss"] = record["arch_loss"]
    # Metric names carry the kind only where a space has several (NB201's keep their flat names).
    prefixes = {kind: "" if space.flat else f"{kind}/" for kind in space.kinds}
    alive = space.per_kind(record["alive"])
    iim = None if record["iim"] is None else space.per_kind(record["iim"])
    metrics["alive_ops"] = float(sum(sum(map(sum, table)) for table in alive.values()))
    # The argmax-cell trajectory: what a stop here would return, and (NB201) how good that cell is.
    cell = record.get("cell")
    if cell is not None:
        metrics["cell/param_free"], metrics["cell/skip"] = float(cell["param_free"]), float(cell["skip"])
        for key, value in (cell.get("benchmark") or {}).items():
            metrics[f"cell/{key}"] = value
    if record.get("op_weights") is not None:
        for kind, table in space.per_kind(record["op_weights"]).items():
            for e, edge in enumerate(space.edges):
                for o, op in enumerate(space.op_table(kind)[e]):
                    metrics[f"op_weight/{prefixes[kind]}{edge}/{op}"] = table[e][o]
    for kind, prefix in prefixes.items():
        for e, edge in enumerate(space.edges):
            metrics[f"alive_ops/{prefix}{edge}"] = float(sum(alive[kind][e]))
            if iim is not None:
                for o, op in enumerate(space.op_table(kind)[e]):
                    value = iim[kind][e][o]
                    if value is not None:  # None: the op was masked before this measurement
                        metrics[f"iim/{prefix}{edge}/{op}"] = value
    return metrics


def _current_genotype(method: SearchMethod) -> Any:
    """The genotype the method would report if it stopped now; None while it is undefined (IS-DARTS on the
    DARTS space before its first IIM measurement)."""
    try:
        return method.genotype()
    except GenotypeError:
        return None


def _train_epoch(
    method: SearchMethod, data: SearchData, cfg: SearchConfig, gens: dict, epoch: int, progress: bool,
    steps: StepControl, graphs: bool,
):
    """One pass over the weight data (from `steps.start` on, when resumed inside the epoch); returns
    (per-step losses, correct count) as device tensors."""
    device = data.train.device
    # A method may change its batch size during the search (SGAS grows it with each decision).
    batch_size = getattr(method, "train_batch_size", None) or cfg.batch_size
    n_batches = data.train.num_batches(batch_size, drop_last=False)
    step_losses, correct = steps.state(
        lambda: (torch.zeros(n_batches, device=device), torch.zeros((), dtype=torch.int64, device=device))
    )
    batches = steps.batches(
        lambda: data.train.batches(batch_size, augment=True, shuffle=cfg.shuffle, generator=gens["data"]),
        gens["data"],
    )
    bar = tqdm(
        batches, initial=steps.start, total=n_batches, leave=False, desc=f"epoch {epoch + 1}/{cfg.epochs}",
        unit="batch", disable=not progress, file=sys.stderr, dynamic_ncols=True,
    )
    # One CUDA graph per epoch (the learning rate and the mask change only between epochs); the α steps of
    # bi-level methods stay eager.
    # Methods that sample on the host each step (SNAS, DSNAS: `graph_safe = False`) stay eager too.
    train_step = BatchGraph(method.train_step, graphs and not method.bilevel and getattr(method, "graph_safe", True))
    for step, (x, y) in enumerate(bar, start=steps.start):
        # Bi-level methods pair each weight batch with a valid batch (split_search_data made the valid half).
        valid = data.valid.sample(len(y), augment=True, generator=gens["valid"]) if method.bilevel else ()
        loss, n_correct = train_step(x, y, *valid)
        step_losses[step] = loss
        correct += n_correct
        if (step + 1) % cfg.log_every == 0 or step + 1 == n_batches:
            check_finite(step_losses[: step + 1], epoch, "training", f"Lower {cfg.space}.search.lr or check the data.")
            bar.set_postfix(loss=f"{step_losses[step].item():.3f}")
        steps.step_done(step, (step_losses, correct))
    return step_losses, correct


def _search_epoch(
    method: SearchMethod, data: SearchData, cfg: SearchConfig, gens: dict, epoch: int, progress: bool, seed: int,
    steps: StepControl, graphs: bool,
) -> Record:
    """One search epoch (0-based `epoch`): train, evaluate, the method's end-of-epoch work; its history record."""
    lr = method.set_epoch(epoch)
    clock = Stopwatch(data.train.device)
    step_losses, correct = _train_epoch(method, data, cfg, gens, epoch, progress, steps, graphs)
    train_seconds = clock.elapsed()
    test_loss, test_acc = evaluate(method.model, data.test, cfg.batch_size, logits=method.logits,
                                   graphs=graphs)

    def iim_batches():
        return data.iim.batches(cfg.iim.batch_size, augment=data.iim_augment, shuffle=False, generator=gens["iim"])

    end = method.end_epoch(epoch + 1, iim_batches if data.iim is not None else None)
    weight_steps = (epoch + 1) * len(step_losses)
    genotype = _current_genotype(method)
    record = {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": step_losses.mean().item(),
        "train_acc": 100.0 * correct.item() / len(data.train),
        "test_loss": test_loss,
        "test_acc": test_acc,
        "images_per_s": len(data.train) / train_seconds,
        "epoch_seconds": clock.elapsed(),
        # One α step per weight step for bi-level methods: the x axis of the collapse study.
        "weight_steps": weight_steps,
        "alpha_steps": weight_steps if method.bilevel else 0,
        "alive": method.space.record({k: m.int().tolist() for k, m in method.space.masks(method.model).items()}),
        "genotype": None if genotype is None else str(genotype),
        "cell": describe_cell(method.space, genotype),
        "op_weights": op_weights(method.space, method.arch_weights()) if method.bilevel else None,
        **end,
    }
    log.info(
        "%s %s seed %d epoch %d/%d  lr %.4f  train loss %.4f acc %.2f  test acc %.2f  %.0f img/s%s",
        cfg.space, cfg.method, seed, epoch + 1, cfg.epochs, lr, record["train_loss"], record["train_acc"],
        test_acc, record["images_per_s"],
        f"  shrink step {end['shrink_step']}" if end.get("shrink_step") is not None else "",
    )
    return record


def run_search(
    run: SearchRun,
    arrays: CifarArrays,
    *,
    on_start: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    on_epoch: Callable[[Record], None] | None = None,
    progress: bool = True,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) one search; returns the genotype, metrics and history to be written.

    `on_start`/`on_epoch` are the epoch loop's tracking hooks (`EpochLoop`; `epoch_metrics` flattens a record
    for MLflow). `stop_after_epochs` ends the call early after that many epochs in total (checkpoint written),
    as a kill would; the next call resumes. A SIGTERM or SIGINT stops it at the next step with a checkpoint
    (Preempted), and `run.checkpoint_every_s` writes one inside long epochs too; a resume continues from that step.
    """
    cfg, seed, profile, data_kind = run.cfg, run.seed, run.profile, run.data_kind
    dev = resolve_device(run.device)
    if profile == "paper" and data_kind != "full":
        info = arrays.info
        raise ConfigError(
            f"params.yaml: profile 'paper' needs the full, verified {info.label}, but its prepared data holds a "
            f"subset; put {info.label} in {info.root_key} (or set data.download: true) and run "
            f"`{info.prepare_command(force=True)}`"
        )
    arrays = reduce_arrays(arrays, cfg)
    # Normalised with the prepared data's own statistics (CIFAR-10's for CIFAR-10), never another dataset's.
    train = DeviceImages(arrays.train_x, arrays.train_y, dev, arrays.mean, arrays.std)
    test = DeviceImages(arrays.test_x, arrays.test_y, dev, arrays.mean, arrays.std)
    data = split_search_data(train, test, cfg, seed, data_kind)
    make_deterministic(seed)
    method = build_method(cfg, num_classes=len(arrays.classes), device=dev,
                          generator=make_generator(torch.device("cpu"), seed + 2))
    space = method.space
    graphs = resolve_speed(cfg, dev).cuda_graphs  # each pass over the data replayed as a CUDA graph
    gens = {"data": make_generator(dev, seed), "iim": make_generator(dev, seed + 1),
            "valid": make_generator(dev, seed + 3)}
    if hasattr(method, "attach_data"):
        # Methods that measure the supernet on whole data sets (DARTS-PT's projections: the valid half)
        # get the search's images and a generator saved with the loop's checkpoints.
        method.attach_data(data.valid if method.bilevel else data.train, gens["valid"])
    settings = {
        "search": dataclasses.asdict(cfg), "seed": seed, "data": run.data_fingerprint, "device": dev.type,
        "code": code_fingerprint(result_modules(cfg.space)),
    }
    loop = EpochLoop(
        name=f"{cfg.space} {cfg.method} seed {seed}", epochs=cfg.epochs,
        checkpoint_path=Path(run.checkpoint_dir) / CHECKPOINT_NAME, key=fingerprint(settings),
        state={"method": method}, generators=gens, progress=progress, stop_after_epochs=stop_after_epochs,
        on_start=on_start, on_epoch=on_epoch, checkpoint_every_s=run.checkpoint_every_s,
    )

    def epoch_work(epoch: int, steps: StepControl) -> Record:
        return _search_epoch(method, data, cfg, gens, epoch, progress, seed, steps, graphs)

    if not loop.start() or not loop.run(epoch_work):
        return {"finished": False, "epochs_done": loop.epochs_done}
    history, elapsed = loop.history, loop.elapsed_s

    genotype = method.genotype()
    final = history[-1]
    mismatches = paper_mismatches(cfg)
    metrics = {
        "space": cfg.space,
        "method": cfg.method,
        "seed": seed,
        "profile": profile,
        "paper_settings": not mismatches and data_kind == "full",
        "paper_mismatches": mismatches + ([] if data_kind == "full" else [f"data: {arrays.info.label} subset"]),
        "data_kind": data_kind,
        "genotype": str(genotype),
        "epochs": cfg.epochs,
        "final_train_loss": final["train_loss"],
        "final_train_acc": final["train_acc"],
        "final_test_acc": final["test_acc"],
        "images_per_s_mean": sum(r["images_per_s"] for r in history) / len(history),
        "search_seconds": elapsed,
        "search_hours": elapsed / 3600.0,
        "cost_unit": cost_unit(dev),
        "device_name": describe_device(dev),
        **run.extra_metrics,
    }
    if space.benchmark is not None:
        metrics["arch_str"] = metrics["genotype"]  # the key the benchmark is looked up by
    if cfg.shrink is not None:
        metrics["shrink"] = {
            "steps": cfg.shrink.steps, "interval": cfg.shrink.interval, "anchor": cfg.shrink.anchor,
            "epochs": list(method.schedule),
        }
    history_doc: dict[str, Any] = {
        "space": cfg.space, "method": cfg.method, "seed": seed,
        "edges": list(space.edges), "ops": list(space.ops),
    }
    if not space.flat:
        history_doc["kinds"] = list(space.kinds)
    if space.edge_ops is not None:  # "ops" are column labels; each edge's own ops per kind
        history_doc["edge_ops"] = {kind: [list(row) for row in space.op_table(kind)] for kind in space.kinds}
    history_doc["epochs"] = history
    return {
        "finished": True,
        "genotype": {**genotype.to_json(), "method": cfg.method, "seed": seed},
        "metrics": metrics,
        "history": history_doc,
    }

