"""One MLflow run per training, for the search, retrain and transfer steps.

`tracked_run` opens a `Tracker` and closes its run however the step ends: FINISHED, FAILED on an error,
KILLED on Ctrl-C or when the stop-after test hook cuts the run short. The trainers' `on_start`/`on_epoch`
hooks open (or, after a kill, reopen) the run whose id travels in the checkpoint, and log every epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from isdarts.tracking import Tracker

RUN_ID_KEY = "mlflow_run_id"  # where the run id travels in a checkpoint's `extra`


class TrackedRun:
    """The tracking side of one training: hooks for the epoch loop, then the final metrics and artifact."""

    def __init__(self, tracker: Tracker, tags: dict[str, str]) -> None:
        self.tracker, self.tags = tracker, tags

    def epoch_hooks(
        self, run_name: str, params: Mapping[str, Any], logged: tuple[str, ...] | Callable[[dict], Mapping[str, Any]]
    ) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], Callable[[dict[str, Any]], None]]:
        """The trainers' (on_start, on_epoch): open or reopen the run, then log each epoch record's `logged`
        keys (or what `logged(record)` returns) at step = the record's epoch."""
        metrics_of = logged if callable(logged) else lambda record: {k: record[k] for k in logged}

        def on_start(extra: dict[str, Any]) -> dict[str, Any]:
            run_id = self.tracker.start(run_name, params=params, tags=self.tags, resume_run_id=extra.get(RUN_ID_KEY))
            return {**extra, RUN_ID_KEY: run_id}

        def on_epoch(record: dict[str, Any]) -> None:
            self.tracker.log_metrics(metrics_of(record), step=record["epoch"])

        return on_start, on_epoch

    def stopped(self) -> None:
        """The run was cut short on purpose (stop-after): leave it as a kill would; a resume reopens it."""
        self.tracker.end("KILLED")

    def finish(
        self, artifact: Path, metrics: Mapping[str, Any] | None = None, step: int = 0,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Log the final `metrics` at `step`, extra `tags` and the `artifact` file; the run ends FINISHED when
        the `tracked_run` block exits."""
        if metrics:
            self.tracker.log_metrics(metrics, step=step)
        if tags:
            self.tracker.set_tags(tags)
        self.tracker.log_artifact(artifact)


@contextmanager
def tracked_run(experiment: str, tags: dict[str, str], *, enabled: bool = True) -> Iterator[TrackedRun]:
    """A `TrackedRun` in `experiment`, its run ended FINISHED, FAILED or KILLED (Ctrl-C) when the block exits.

    `enabled=False` tracks nothing (tests; every rank but 0 of a DDP run).
    """
    with Tracker(experiment=experiment, enabled=enabled) as tracker:
        yield TrackedRun(tracker, tags)
