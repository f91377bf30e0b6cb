"""Stopping a training cleanly inside an epoch: SIGTERM/SIGINT (cluster preemption, Ctrl-C) and a timer.

Clusters stop jobs with SIGTERM and a grace period (SLURM, Kubernetes). `StopSignal` turns the first
SIGTERM or SIGINT into a request the epoch loop honours at the next step boundary: it finishes the step,
writes a checkpoint inside the epoch and raises `Preempted`; a second signal stops at once, as before.
`StepControl` is what a trainer's epoch sees: where to start (a resumed epoch skips the steps already
done, replaying the data order exactly) and the call to make after each step.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import torch

from isdarts.errors import CheckpointError, Preempted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """While installed, the first SIGTERM or SIGINT only sets `received`; the second acts as usual."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> StopSignal:
        # signal.signal works only in the main thread; elsewhere (a test's worker thread) stops stay abrupt.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def uninstall(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # asked twice: stop now
            previous = self._previous.get(signum)
            self.uninstall()
            if callable(previous):
                previous(signum, frame)
            raise KeyboardInterrupt
        self.received = signum


class StepControl:
    """One epoch's view of the loop: the step it starts at and the hook to call after every step.

    `state` is what the trainer accumulates over the epoch (device tensors: per-step losses, correct
    counts); an in-epoch checkpoint saves it and a resumed epoch starts from it.
    """

    def __init__(self, epoch: int, resumed: dict[str, Any] | None, after_step: Callable[..., None]) -> None:
        self.epoch = epoch
        self.resumed = resumed
        self.start = resumed["step"] if resumed else 0
        self._after_step = after_step
        self.data_rng: torch.Tensor | None = None

    def state(self, fresh: Callable[[], tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        """The epoch's accumulators: `fresh()` at the epoch's start, else those saved at the step resumed from."""
        made = fresh()
        if self.resumed is None:
            return made
        return tuple(saved.to(t.device) for saved, t in zip(self.resumed["state"], made, strict=True))

    def batches(self, make: Callable[[], Iterator[Any]], generator: torch.Generator) -> Iterator[Any]:
        """The epoch's batches from step `start` on. `generator` must be the only random stream `make()`'s
        iterator draws from: a resumed epoch restarts it from the epoch's start and draws the steps already
        done again, so the remaining batches (order and augmentation) are those an uninterrupted run sees."""
        if self.resumed is None:
            self.data_rng = generator.get_state()
            return make()
        at_step = generator.get_state()  # restored from the checkpoint with every other stream
        self.data_rng = self.resumed["data_rng"]
        generator.set_state(self.data_rng)
        batches = make()
        for _ in range(self.start):
            next(batches)
        if not torch.equal(generator.get_state(), at_step):
            raise CheckpointError(
                "an in-epoch checkpoint could not replay its data order (the batch code changed?); delete the "
                "checkpoint to restart the run"
            )
        return batches

    def step_done(
        self, step: int, state: tuple[torch.Tensor, ...] | Callable[[], tuple[torch.Tensor, ...]]
    ) -> None:
        """Call after step `step` (0-based) of the epoch with the accumulators so far (or a callable giving
        them, called only when a checkpoint is written): the loop may write an in-epoch checkpoint here, and
        raises Preempted after a stop request."""
        self._after_step(self, step, state)


def due_timer(every_s: float | None) -> Callable[[], bool]:
    """True once every `every_s` seconds (None or 0: never); restarts when it fires."""
    if not every_s:
        return lambda: False
    last = [time.monotonic()]

    def due() -> bool:
        if time.monotonic() - last[0] < every_s:
            return False
        last[0] = time.monotonic()
        return True

    return due


__all__ = ["Preempted", "StepControl", "StopSignal", "due_timer"]
