"""One progress line per epoch, with an ETA, for trainings that run without progress bars.

Under `dvc repro` the stages switch tqdm's bars off (their redraws turn into walls of text in DVC's output
and in CI logs), so without this a 20-minute search would print nothing between DVC's "Running stage" and
its end. The line names the DVC stage, so a user watching several stages knows which one is talking.
It changes no result, so it is not a DVC dependency of any stage.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

# A quick search runs an epoch every few seconds: a line each would drown DVC's own output.
DEFAULT_EVERY_S = 30.0


def format_duration(seconds: float) -> str:
    """3725 -> '1h02m', 95 -> '1m35s', 7.4 -> '7s'."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def total_epochs(params: Mapping[str, Any]) -> int | None:
    """The epoch count of a training's logged params: the `epochs` of its one settings block
    (`search`, `retrain` or `imagenet`); None if there is not exactly one."""
    counts = [block["epochs"] for block in params.values() if isinstance(block, Mapping) and "epochs" in block]
    return int(counts[0]) if len(counts) == 1 else None


class EpochProgress:
    """Called with each epoch record (1-based `epoch`, `epoch_seconds`); prints the first epoch this process
    trains, then at most one line every `every_s` seconds, and the last epoch.

    The ETA is the mean epoch time of this process times the epochs left: epochs trained before a resume
    ran on another process, maybe on another machine, so they do not count.
    """

    def __init__(
        self, label: str, epochs: int, *, every_s: float = DEFAULT_EVERY_S, stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.epochs, self.every_s = label, epochs, every_s
        self.stream, self.clock = stream, clock
        self._seconds: list[float] = []
        self._last_line: float | None = None

    def __call__(self, record: Mapping[str, Any]) -> None:
        epoch = int(record["epoch"])
        self._seconds.append(float(record["epoch_seconds"]))
        now = self.clock()
        due = self._last_line is None or now - self._last_line >= self.every_s or epoch >= self.epochs
        if not due:
            return
        self._last_line = now
        print(self.line(epoch), file=self.stream or sys.stderr, flush=True)

    def line(self, epoch: int) -> str:
        mean = sum(self._seconds) / len(self._seconds)
        done = f"{self.label}: epoch {epoch}/{self.epochs} ({100 * epoch / self.epochs:.0f}%)"
        speed = f"{format_duration(mean)}/epoch"
        if epoch >= self.epochs:
            return f"{done}, {speed}, done"
        return f"{done}, {speed}, ETA {format_duration(mean * (self.epochs - epoch))}"


def progress_for(run_name: str, params: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> EpochProgress | None:
    """The per-epoch line of a training: on under DVC (labelled by its stage) or when stderr is not a
    terminal (a log file, CI), where the bars are off or unreadable; None otherwise or if the epoch count
    is unknown."""
    epochs = total_epochs(params)
    stage = env.get("DVC_STAGE")
    if epochs is None or (stage is None and sys.stderr.isatty()):
        return None
    return EpochProgress(stage or run_name, epochs)
