"""What MLflow did not take while its store was down, kept in a file and replayed once it answers.

A tracking failure never stops a training (tracking.Tracker goes quiet after the first error). What it
would have logged from then on is collected here, written beside the run's outputs when the run ends, and
sent with `isdarts tracking-sync FILE` (into the same run when the store still has it, else a new one).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from isdarts.io import atomic_write_json

BACKLOG_NAME = "mlflow_backlog.json"
_BATCH = 1000  # MLflow's limit of metrics per log_batch call (mlflow/utils/validation.py)


@dataclass
class Backlog:
    """One run's tracking calls that did not reach the store, in the order they were made."""

    tracking_uri: str
    experiment: str
    error: str
    run_name: str | None = None
    run_id: str | None = None  # None when the run was never created in the store
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)  # key, value, timestamp ms, step
    status: str | None = None

    def write(self, path: Path) -> Path:
        atomic_write_json(path, asdict(self))
        return path

    @classmethod
    def read(cls, path: Path) -> Backlog:
        data = json.loads(Path(path).read_text())
        data["metrics"] = [tuple(m) for m in data.get("metrics", [])]
        return cls(**data)


def replay(path: str | os.PathLike[str], tracking_uri: str | None = None) -> str:
    """Send a backlog file to the store (its own URI unless `tracking_uri` is given); returns the run id.

    The run it belongs to is continued when the store has it, so one training stays one run; otherwise a
    run is created with the backlog's name, params and tags. The file is removed once everything is in.
    """
    from mlflow import MlflowClient  # mlflow loads only when a backlog is replayed
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    backlog = Backlog.read(Path(path))
    client = MlflowClient(tracking_uri=tracking_uri or backlog.tracking_uri)
    run_id = backlog.run_id
    existing_params: dict[str, str] = {}
    if run_id is not None:
        try:
            existing_params = client.get_run(run_id).data.params
        except MlflowException:
            run_id = None
    if run_id is None:
        experiment = client.get_experiment_by_name(backlog.experiment)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(backlog.experiment)
        run_id = client.create_run(experiment_id, run_name=backlog.run_name).info.run_id
    params = [Param(k, v) for k, v in backlog.params.items() if k not in existing_params]
    tags = [RunTag(k, v) for k, v in {**backlog.tags, "isdarts.replayed_from": str(path)}.items()]
    metrics = [Metric(key, value, timestamp, step) for key, value, timestamp, step in backlog.metrics]
    for start in range(0, max(len(params), len(tags)), 100):
        client.log_batch(run_id, params=params[start : start + 100], tags=tags[start : start + 100])
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
    if backlog.status is not None:
        client.set_terminated(run_id, backlog.status)
    Path(path).unlink()
    return run_id
