"""One MLflow run per training, for the search, retrain and transfer steps.

`tracked_run` opens a `Tracker` and closes its run however the step ends: FINISHED, FAILED on an error,
KILLED on Ctrl-C or when the stop-after test hook cuts the run short. The trainers' `on_start`/`on_epoch`
hooks open (or, after a kill, reopen) the run whose id travels in the checkpoint, and log every epoch.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isdarts.pipeline.progress import progress_for
from isdarts.tracking import Tracker, TrackingWarning, flatten_params
from isdarts.tracking_backlog import BACKLOG_NAME

if TYPE_CHECKING:
    from isdarts.train.export import ExportedModel

RUN_ID_KEY = "mlflow_run_id"  # where the run id travels in a checkpoint's `extra`
MODEL_TAGS = ("space", "method", "seed", "genotype", "dvc.stage", "dvc.exp_name")  # run tags a logged model gets


def run_key(run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> str:
    """What a run computes (its name, DVC stage and experiment, settings) as a short hash: the MLflow run of
    a training killed before its first checkpoint is found again by it. The experiment name keeps two
    queued DVC experiments of one stage apart."""
    where = [tags.get("dvc.stage"), tags.get("dvc.exp_name")]
    identity = json.dumps([run_name, where, flatten_params(params)], sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


class TrackedRun:
    """The tracking side of one training: hooks for the epoch loop, then the final metrics and artifact."""

    def __init__(self, tracker: Tracker, tags: dict[str, str]) -> None:
        self.tracker, self.tags = tracker, tags
        self.out_dir: Path | None = None  # where the outputs went, once `finish` has run

    def epoch_hooks(
        self, run_name: str, params: Mapping[str, Any], logged: tuple[str, ...] | Callable[[dict], Mapping[str, Any]]
    ) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], Callable[[dict[str, Any]], None]]:
        """The trainers' (on_start, on_epoch): open or reopen the run, then log each epoch record's `logged`
        keys (or what `logged(record)` returns) at step = the record's epoch, and print the epoch's progress
        line (see `progress_for`)."""
        metrics_of = logged if callable(logged) else lambda record: {k: record[k] for k in logged}
        key = run_key(run_name, self.tags, params)
        progress = progress_for(run_name, params)

        def on_start(extra: dict[str, Any]) -> dict[str, Any]:
            run_id = self.tracker.start(
                run_name, params=params, tags=self.tags, resume_run_id=extra.get(RUN_ID_KEY), run_key=key
            )
            return {**extra, RUN_ID_KEY: run_id}

        def on_epoch(record: dict[str, Any]) -> None:
            self.tracker.log_metrics(metrics_of(record), step=record["epoch"])
            if progress is not None:
                progress(record)

        return on_start, on_epoch

    def stopped(self) -> None:
        """The run was cut short on purpose (stop-after): leave it as a kill would; a resume reopens it."""
        self.tracker.end("KILLED")

    def finish(
        self, artifact: Path, metrics: Mapping[str, Any] | None = None, step: int = 0,
        tags: Mapping[str, Any] | None = None, model: ExportedModel | None = None,
    ) -> None:
        """Log the final `metrics` at `step`, extra `tags`, the `artifact` file and the trained `model` (as the
        MLflow model "model"); the run ends FINISHED when the `tracked_run` block exits."""
        if metrics:
            self.tracker.log_metrics(metrics, step=step)
        if tags:
            self.tracker.set_tags(tags)
        self.tracker.log_artifact(artifact)
        if model is not None:
            self._log_model(model, step)
        self.out_dir = Path(artifact).parent

    def _log_model(self, model: ExportedModel, step: int) -> None:
        """The exported network as an MLflow model, its card's numbers as the model's params, the whole card as
        its metadata. The run is tagged with the file (also when tracking failed: the tag goes in the backlog)."""
        self.tracker.set_tags({"model_file": str(model.path)})
        scalars = {k: v for k, v in model.card.items() if isinstance(v, str | int | float)}
        uri = self.tracker.log_model(
            model.program.module(), model.example.numpy(), model.example_logits.numpy(), params=scalars,
            tags={k: self.tags[k] for k in MODEL_TAGS if k in self.tags}, metadata=model.card, step=step,
        )
        if uri is not None:
            self.tracker.set_tags({"model_uri": uri})

    def keep_backlog(self) -> Path | None:
        """After a finished run whose store failed: write what MLflow did not take beside the outputs."""
        backlog = self.tracker.backlog
        if backlog is None or self.out_dir is None:
            return None
        path = backlog.write(self.out_dir / BACKLOG_NAME)
        warnings.warn(
            f"MLflow ({backlog.tracking_uri}) did not take {len(backlog.metrics)} metric values and the run's "
            f"end; they are kept in {path}. Send them with `isdarts tracking-sync {path}` once the store answers.",
            TrackingWarning, stacklevel=2,
        )
        return path


@contextmanager
def tracked_run(experiment: str, tags: dict[str, str], *, enabled: bool = True) -> Iterator[TrackedRun]:
    """A `TrackedRun` in `experiment`, its run ended FINISHED, FAILED or KILLED (Ctrl-C) when the block exits.

    `enabled=False` tracks nothing (tests; every rank but 0 of a DDP run).
    """
    tracker = Tracker(experiment=experiment, enabled=enabled)
    run = TrackedRun(tracker, tags)
    with tracker:
        yield run
    run.keep_backlog()
