"""The epoch loop every trainer shares: resume, random-stream restore, progress bar, per-epoch history and
checkpoint, the tracking hooks, and the stop-after test hook that simulates a kill.

A trainer keeps only what differs: its settings fingerprint, the objects whose state is checkpointed, and
one epoch's work (a callable returning that epoch's history record). A killed run resumes from the last
per-epoch checkpoint and ends exactly as an uninterrupted one, since everything it draws from is saved.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from tqdm import tqdm

from isdarts.data.device_loader import DeviceImages
from isdarts.errors import Preempted
from isdarts.io import atomic_write_json
from isdarts.train.checkpoint import load_checkpoint, save_checkpoint
from isdarts.train.graphs import BatchGraph
from isdarts.train.preempt import StepControl, StopSignal, due_timer
from isdarts.train.runtime import restore_rng, rng_state

log = logging.getLogger(__name__)

Record = dict[str, Any]
METRICS_NAME = "metrics.json"
HISTORY_NAME = "history.json"


class Stateful(Protocol):
    """What a checkpoint holds one of: a model, an optimiser, a search method."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class EpochLoop:
    """Epochs `epochs_done + 1 .. epochs` of one run, resumable from `checkpoint_path`.

    Use in two steps, so a trainer can act between resuming and training (DDP wraps the model there):
    `start()` resumes and opens tracking, `run(epoch_work)` trains. Afterwards `history`, `elapsed_s`,
    `epochs_done` and `extra` describe the run. Under DDP every rank runs the loop and resumes from the same
    file; only the `writer` (rank 0) calls the hooks and writes checkpoints, and `barrier` runs on every rank
    after each epoch so no rank runs ahead of a checkpoint it may need.

    `on_start(extra)` runs once before training with the `extra` dict of the checkpoint resumed from ({} when
    fresh); what it returns is stored in every later checkpoint (an MLflow run id, so a resumed run logs into
    the same MLflow run). `on_epoch(record)` runs after each epoch, before its checkpoint is written.
    `stop_after_epochs` ends the run after that many epochs in total (checkpoint written), as a kill would.
    """

    def __init__(
        self,
        *,
        name: str,
        epochs: int,
        checkpoint_path: Path,
        key: str,
        state: Mapping[str, Stateful],
        generators: Mapping[str, torch.Generator] | None = None,
        progress: bool = False,
        stop_after_epochs: int | None = None,
        on_start: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        on_epoch: Callable[[Record], None] | None = None,
        writer: bool = True,
        barrier: Callable[[], None] | None = None,
        checkpoint_every_s: float | None = None,
        agree: Callable[[int], int] | None = None,
    ) -> None:
        self.name, self.epochs = name, epochs
        self.checkpoint_path, self.key = Path(checkpoint_path), key
        self.state, self.generators = state, dict(generators or {})
        self.progress, self.stop_after_epochs = progress, stop_after_epochs
        self.on_start, self.on_epoch = on_start, on_epoch
        self.writer, self.barrier = writer, barrier
        self.history: list[Record] = []
        self.elapsed_s = 0.0
        self.epochs_done = 0
        self.extra: dict[str, Any] = {}
        self.checkpoint_every_s = checkpoint_every_s
        # Under DDP every rank must stop (or checkpoint) at the same step: `agree(value)` is the largest of
        # the ranks' values, so a signal that reached one rank stops them all, with its number.
        self.agree = agree or (lambda value: value)
        self.in_epoch: dict[str, Any] | None = None  # where a checkpoint written inside an epoch left off
        self.stop = StopSignal()

    def _stop_here(self) -> bool:
        """True when the stop-after hook says this run ends now, short of its last epoch."""
        stop = self.stop_after_epochs
        return stop is not None and stop <= self.epochs_done < self.epochs

    def start(self) -> bool:
        """Resume from the checkpoint if one of these settings exists; False if the stop-after hook already
        ends the run (tracking is then never opened), else open tracking and return True."""
        saved = load_checkpoint(self.checkpoint_path, self.key)
        if saved is not None:
            for name, obj in self.state.items():
                obj.load_state_dict(saved[name])
            restore_rng(saved["rng"], self.generators)
            self.history, self.elapsed_s = saved["history"], saved["elapsed_s"]
            self.epochs_done, self.extra = saved["epochs_done"], saved["extra"]
            self.in_epoch = saved.get("in_epoch")
            where = f", step {self.in_epoch['step']} of epoch {self.epochs_done + 1}" if self.in_epoch else ""
            log.info("resuming %s from %s after epoch %d%s", self.name, self.checkpoint_path, self.epochs_done, where)
        if self._stop_here():
            return False
        if self.on_start is not None and self.writer:
            self.extra = dict(self.on_start(dict(self.extra)) or {})
        return True

    def run(self, epoch_work: Callable[[int, StepControl], Record]) -> bool:
        """Train the remaining epochs; `epoch_work(epoch, steps)` (0-based epoch) trains one and returns its
        history record, which must hold `epoch_seconds`. A trainer that calls `steps.step_done` after each step
        can be stopped (SIGTERM, SIGINT) and checkpointed inside an epoch, every `checkpoint_every_s` too;
        one that does not is stopped at the epoch's end. Returns True once the last epoch is done, False if
        the stop-after hook ended it early; raises Preempted after a stop request, its checkpoint written."""
        epochs = tqdm(
            range(self.epochs_done, self.epochs), initial=self.epochs_done, total=self.epochs, desc=self.name,
            unit="epoch", disable=not self.progress, file=sys.stderr, dynamic_ncols=True,
        )
        self._due = due_timer(self.checkpoint_every_s)
        self.stop.install()
        try:
            for epoch in epochs:
                record = epoch_work(epoch, StepControl(epoch, self.in_epoch, self._after_step))
                self.in_epoch = None
                self.history.append(record)
                self.elapsed_s += record["epoch_seconds"]
                self.epochs_done = epoch + 1
                if self.writer:
                    if self.on_epoch is not None:
                        self.on_epoch(record)
                    save_checkpoint(self.checkpoint_path, self._checkpoint(), self.key)
                if self.barrier is not None:
                    self.barrier()
                if self._stop_here():
                    return False
                signum = self.agree(self.stop.received or 0)
                if signum and epoch + 1 < self.epochs:
                    self._preempted(f"after epoch {epoch + 1}", signum)
        finally:
            self.stop.uninstall()
        return True

    def _after_step(
        self, control: StepControl, step: int,
        state: tuple[torch.Tensor, ...] | Callable[[], tuple[torch.Tensor, ...]],
    ) -> None:
        """After each step: write an in-epoch checkpoint when a stop was requested or the timer is due. A
        callable `state` is called on every rank, and only then (it may sync the ranks' accumulators)."""
        signum = self.agree(self.stop.received or 0)
        if not (signum or self.agree(int(self._due()))):
            return
        if callable(state):
            state = state()
        if self.writer:
            in_epoch = {"step": step + 1, "data_rng": control.data_rng, "state": [t.detach().cpu() for t in state]}
            save_checkpoint(self.checkpoint_path, self._checkpoint(in_epoch), self.key)
        if self.barrier is not None:
            self.barrier()
        if signum:
            self._preempted(f"at step {step + 1} of epoch {control.epoch + 1}", signum)

    def _preempted(self, where: str, signum: int) -> None:
        raise Preempted(
            f"{self.name} stopped by {signal.Signals(signum).name} {where}; its checkpoint {self.checkpoint_path} "
            "holds every step so far. Run the same command again (or `dvc repro`) to resume from there",
            signum,
        )

    def _checkpoint(self, in_epoch: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "epochs_done": self.epochs_done, **{name: obj.state_dict() for name, obj in self.state.items()},
            "rng": rng_state(self.generators), "history": self.history, "elapsed_s": self.elapsed_s,
            "extra": self.extra, "in_epoch": in_epoch,
        }


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    data: DeviceImages,
    batch_size: int,
    logits: Callable[[torch.Tensor], torch.Tensor] | None = None,
    graphs: bool = False,
) -> tuple[float, float]:
    """Loss and accuracy (%) on a device-resident split, in eval mode.

    `logits(x)` defaults to the main head of a network that returns (logits, auxiliary logits); a search
    passes its method's logits, which mix the supernet's ops, and may replay the batches as a CUDA graph.
    """
    forward = logits if logits is not None else (lambda x: model(x)[0])

    def batch_stats(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = forward(x)
        return F.cross_entropy(out, y, reduction="sum").double(), (out.argmax(1) == y).sum()

    stats = BatchGraph(batch_stats, graphs)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.device)
    correct = torch.zeros((), dtype=torch.int64, device=data.device)
    for x, y in data.batches(batch_size, augment=False, shuffle=False, generator=None):
        loss, hits = stats(x, y)  # used at once: a replay's outputs are overwritten by the next one
        loss_sum += loss
        correct += hits
    model.train(was_training)
    n = len(data)
    return loss_sum.item() / n, 100.0 * correct.item() / n


def write_outputs(out_dir: Path, metrics: dict[str, Any], history: list[Record]) -> None:
    """out_dir/history.json ({"epochs": history}), then out_dir/metrics.json.

    metrics.json is what marks a finished run, so it must never appear alone: a failure writing it removes
    the history again.
    """
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / HISTORY_NAME, {"epochs": history})
    try:
        atomic_write_json(out_dir / METRICS_NAME, metrics)
    except BaseException:
        (out_dir / HISTORY_NAME).unlink(missing_ok=True)
        raise
