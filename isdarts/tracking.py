"""A small MLflow wrapper that can never take a search down with it.

Every MLflow call goes through :class:`Tracker`, which talks to the store through ``MlflowClient``
with an explicit run id (no global active-run state), batches metrics per step, waits out a SQLite
store locked by another writer, and turns itself into a no-op after the first other tracking error.
``mlflow`` is imported lazily, on the first :meth:`Tracker.start`, so that telemetry can be switched
off before MLflow reads its settings.

The store is the project's SQLite file unless ``MLFLOW_TRACKING_URI`` names another, such as a tracking server
(``http://host:5000``, e.g. `isdarts tracking-server` on a cluster): the same calls work there unchanged, with
the artifacts sent through the server; the SQLite set-up lock and lock retries simply do not apply, and
MLflow's HTTP client waits out a server that is briefly away (its own request retries) before tracking gives up.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import math
import os
import random
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from isdarts.tracking_backlog import Backlog

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

DEFAULT_DB_NAME = "mlflow.db"
ARTIFACTS_DIR_NAME = "mlartifacts"
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
# MLflow 3's UI opens an experiment without this tag as a GenAI one (a traces page saying "No data");
# model training makes it open on the runs table (the values are the UI's own, mlflow/server/js).
EXPERIMENT_KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow 3.17's UI shows every experiment in a global GenAI/model-training mode (GenAI unless the browser has
# chosen otherwise), no longer by this tag; a link that carries this query opens in model-training mode.
UI_TRAINING_MODE = "workflowType=machine_learning"
RUN_KEY_TAG = "isdarts.run_key"  # what a run computes: a re-run after a kill finds its run by it
MODEL_ARTIFACT = "model"  # a run's trained network: runs:/<run id>/model

# DVC runs `exp run --temp` and queued experiments in a throwaway copy of the repo under
# `<repo>/.dvc/tmp/exps/` (dvc/repo/experiments/utils.py: EXEC_TMP_DIR = "exps", under repo.tmp_dir).
_DVC_EXP_TMP_PARTS = (".dvc", "tmp", "exps")
# MLflow accepts only these characters in metric, param and tag keys (colon dropped: not on Windows).
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- ]")
# MLflow's own batch limits (mlflow/utils/validation.py).
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_TAGS_PER_BATCH = 100
_GIT_TIMEOUT_S = 10
# SQLite takes one writer at a time. A process that finds the file locked waits out its busy timeout, then
# fails with "database is locked": two queued DVC experiments (or searches run side by side) writing to one
# mlflow.db meet that, and so do two processes creating a new store's tables at once. Such a call is tried
# again after these pauses (about 80 s in all, doubling, jittered) before tracking gives up on the store.
LOCK_RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0)
_TRANSIENT_STORE_ERROR = re.compile(
    r"database is locked|database table is locked|(table|index) \S+ already exists"  # the last: a schema race
)

PathArg = str | os.PathLike[str]


class TrackingWarning(RuntimeWarning):
    """Tracking went wrong; the search goes on without it."""


def disable_telemetry() -> None:
    """Switch off DVC analytics and MLflow usage telemetry for this process and its children.

    MLflow builds its telemetry client at ``import mlflow`` time, so call this before that import;
    if MLflow is already imported, its telemetry client is reset (to none, now that it is disabled).
    """
    os.environ["DVC_NO_ANALYTICS"] = "1"  # dvc/analytics.py: any non-empty value
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # mlflow/environment_variables.py
    # The cross-tool convention; MLflow only honours the literal "true", so don't override a user's "1".
    os.environ.setdefault("DO_NOT_TRACK", "true")
    try:
        if "mlflow" in sys.modules:
            # Only when mlflow is already loaded: importing it here would load mlflow into every process.
            from mlflow.telemetry import set_telemetry_client

            set_telemetry_client()
    except Exception:  # a telemetry switch must never be the reason a run fails
        pass


def is_transient_store_error(exc: BaseException) -> bool:
    """A lock or schema-creation race of a shared SQLite store: the same call can succeed a moment later.
    MLflow wraps SQLAlchemy's error in its own, so the whole chain of causes is read."""
    seen: BaseException | None = exc
    while seen is not None:
        if _TRANSIENT_STORE_ERROR.search(str(seen).lower()):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def call_with_lock_retry(
    fn: Callable[..., Any], *args: Any, delays: Sequence[float] | None = None,
    sleep: Callable[[float], None] = time.sleep, **kwargs: Any,
) -> Any:
    """``fn(*args, **kwargs)``, tried again after each of `delays` (default LOCK_RETRY_DELAYS_S) while it fails
    with a transient store error (`is_transient_store_error`); any other error, or the last, propagates."""
    delays = LOCK_RETRY_DELAYS_S if delays is None else delays
    for delay in delays:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_transient_store_error(exc):
                raise
        # Jitter keeps two waiting processes from waking, and colliding, in step.
        sleep(delay * random.uniform(0.5, 1.5))
    return fn(*args, **kwargs)


class _LockRetryingClient:
    """An ``MlflowClient`` whose every call goes through `call_with_lock_retry` with `delays`."""

    def __init__(self, client: Any, delays: Sequence[float] | None = None) -> None:
        self._client, self._delays = client, delays

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        return functools.partial(call_with_lock_retry, attr, delays=self._delays)


def _outside_exp_tempdir(path: Path) -> Path:
    """``<repo>/.dvc/tmp/exps/<x>/...`` -> ``<repo>``; any other path unchanged."""
    parts = path.parts
    for i in range(len(parts) - len(_DVC_EXP_TMP_PARTS) + 1):
        if parts[i : i + len(_DVC_EXP_TMP_PARTS)] == _DVC_EXP_TMP_PARTS:
            return Path(*parts[:i])
    return path


def _git(args: list[str], cwd: PathArg | None) -> str | None:
    """``git <args>`` stdout (stripped), or None when git or the repository is not there."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def project_root(env: Mapping[str, str] = os.environ, cwd: PathArg | None = None) -> Path:
    """The repository whose tracking store runs belong to.

    ``DVC_ROOT`` (set by DVC for every stage command) wins, then the git toplevel of ``cwd``, then
    ``cwd``. A path inside a DVC experiment temp copy maps back to the original repository, so
    runs are not deleted along with the copy.
    """
    cwd = Path(os.path.abspath(cwd or os.getcwd()))
    if dvc_root := env.get("DVC_ROOT"):
        root = Path(os.path.abspath(dvc_root))
    elif toplevel := _git(["rev-parse", "--show-toplevel"], cwd):
        root = Path(toplevel)
    else:
        root = cwd
    return _outside_exp_tempdir(root)


def resolve_tracking_uri(env: Mapping[str, str] = os.environ, cwd: PathArg | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an absolute ``sqlite:///<project_root>/mlflow.db``."""
    if uri := env.get("MLFLOW_TRACKING_URI"):
        return uri
    return f"sqlite:///{(project_root(env, cwd) / DEFAULT_DB_NAME).as_posix()}"


def _sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a local ``sqlite:///`` store; None for any other store."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    db = tracking_uri[len(prefix) :].split("?", 1)[0]
    if not db or db == ":memory:":
        return None
    return Path(os.path.abspath(db))


def _artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """``<db dir>/mlartifacts/<experiment>`` for a local sqlite store; None lets the server choose.

    MLflow's default artifact root is ``./mlruns`` of the process cwd, which for DVC temp runs is a
    directory that is about to be deleted.
    """
    db = _sqlite_file(tracking_uri)
    if db is None:
        return None
    safe_name = re.sub(r"[^\w.-]", "_", experiment)
    return (db.parent / ARTIFACTS_DIR_NAME / safe_name).as_uri()


@contextlib.contextmanager
def _store_setup_lock(tracking_uri: str) -> Iterator[None]:
    """Hold ``<db>.lock`` exclusively while this process opens a local SQLite store.

    Opening a store creates or migrates its tables (alembic, in many transactions); two processes doing that
    at once break each other's migration for good (a leftover ``_alembic_tmp_*`` table, a revision row that
    moved under them), which no retry mends. Once one has done it, the others find the schema current.
    """
    db = _sqlite_file(tracking_uri)
    if db is None or fcntl is None:  # a server store migrates itself; Windows has no flock
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts -> ``{"a.b.c": "value"}`` with string values, as MLflow params are strings."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def _key(name: str) -> str:
    """A key MLflow accepts: it forbids ``<``, so an edge ``1<-0`` (node 1 reads node 0) is spelled
    ``1_from_0``; any other character it refuses becomes ``_`` (one bad key would fail the whole batch)."""
    return _BAD_KEY_CHARS.sub("_", str(name).replace("<-", "_from_"))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _jsonable(value: Any) -> Any:
    """numpy/torch scalars and arrays -> plain Python, anything else -> str (for ``log_dict``)."""
    for method in ("tolist", "item"):
        if hasattr(value, method):
            with contextlib.suppress(Exception):
                return getattr(value, method)()
    return str(value)


@contextlib.contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking URI at `uri` for the block, then restore it and the process's
    ``MLFLOW_TRACKING_URI`` exactly: MLflow's own helper deletes that variable on the way out when no URI
    was set in code, which would send every later run of the process (and its children) to another store."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri  # mlflow loads once tracking starts

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def _torch_version() -> str:
    """The installed torch's public version (``2.5.1``, not ``2.5.1+cu124``: pip matches local builds by it)."""
    return importlib.metadata.version("torch").split("+", 1)[0]


def standard_tags(
    *,
    seed: int,
    space: str,
    method: str,
    stage: str | None,
    profile: str,
    cwd: PathArg | None = None,
    env: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """The tags every search run carries: what ran, from which code, in which DVC stage/experiment.

    Git facts come from the checkout the code runs in (``cwd``): inside a DVC temp copy that is the
    experiment's own commit, not the original repository's HEAD. All values are strings, as MLflow
    tags are; ``mlflow.source.git.commit`` is the key MLflow's UI shows as the run's commit.
    """
    tags = {"seed": str(seed), "space": space, "method": method, "profile": profile}
    if stage := stage or env.get("DVC_STAGE"):
        tags["dvc.stage"] = stage
    if exp_name := env.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = exp_name
    if baseline := env.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.exp_baseline_rev"] = baseline
    if commit := _git(["rev-parse", "HEAD"], cwd):
        tags["git.commit"] = tags["mlflow.source.git.commit"] = commit
        status = _git(["status", "--porcelain"], cwd)
        if status is not None:
            tags["git.dirty"] = "true" if status else "false"
    return tags


class Tracker:
    """One MLflow run at a time, logged through ``MlflowClient`` with an explicit run id.

    Any tracking error disables the tracker with a :class:`TrackingWarning` naming the problem and
    the tracking URI; from then on every call is a no-op, so a broken store never stops a search.
    """

    def __init__(
        self, experiment: str, *, tracking_uri: str | None = None, enabled: bool = True,
        lock_retry_delays: Sequence[float] | None = None,
    ) -> None:
        self.experiment = experiment
        self.lock_retry_delays = lock_retry_delays  # None: LOCK_RETRY_DELAYS_S
        self.tracking_uri = tracking_uri or resolve_tracking_uri()
        self.enabled = enabled
        self.run_id: str | None = None
        self._open = False
        self._client: Any = None
        # What the store did not take once tracking failed (None while it works); see tracking_backlog.
        self.backlog: Backlog | None = None
        self._intent: dict[str, Any] = {}

    standard_tags = staticmethod(standard_tags)

    # -- failure handling -------------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        warnings.warn(f"{message} (MLflow tracking URI: {self.tracking_uri})", TrackingWarning, stacklevel=3)

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Run one tracking step; on any error warn once, then go quiet for good."""
        try:
            yield
        except Exception as exc:
            self.enabled = False
            detail = f"{type(exc).__name__}: {exc}"
            if len(detail) > 500:  # SQL errors quote whole statements
                detail = detail[:500] + "..."
            self._warn(
                f"MLflow tracking disabled after failing to {action}: {detail}; the search goes on, and what "
                "it logs from now on is kept in a file beside its outputs"
            )
            self.backlog = Backlog(
                self.tracking_uri, self.experiment, detail, run_id=self.run_id if self._open else None,
                **self._intent,
            )
            if self._open and self._client is not None:
                # Best effort, so the UI does not show a run RUNNING forever.
                with contextlib.suppress(Exception):
                    self._client.set_terminated(self.run_id, "FAILED")
            self._open = False

    @property
    def active(self) -> bool:
        """True while a run is open and tracking still works."""
        return self.enabled and self._open

    # -- run lifecycle ----------------------------------------------------------------------------

    def start(
        self,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        resume_run_id: str | None = None,
        run_key: str | None = None,
    ) -> str | None:
        """Open a new run, or reopen ``resume_run_id`` (a search resumed from its checkpoint).

        ``run_key`` names what the run computes (stage and settings). Without a run id to resume, an
        unfinished run of the same key is adopted: a process killed before its first checkpoint leaves
        its run RUNNING, and the re-run continues that run instead of opening another beside it. Any
        other unfinished run of the key is closed as KILLED, so one training is one run however often
        it was killed. Returns the run id, or None if tracking is off or failed. Params are flattened
        with dots; on resume, params the run already has are not logged again (MLflow params are immutable).
        """
        if not self.enabled:
            return None
        flat_params = {_key(k): v for k, v in flatten_params(params or {}).items()}
        key_tag = {RUN_KEY_TAG: run_key} if run_key else {}
        all_tags = {_key(k): str(v) for k, v in {**(tags or {}), **key_tag}.items()}
        self._intent = {"run_name": run_name, "params": flat_params, "tags": all_tags}
        with self._guard(f"start run {run_name!r} in experiment {self.experiment!r}"):
            client = self._connect()
            experiment_id = self._experiment_id(client)
            unfinished = self._unfinished_runs(client, experiment_id, run_key) if run_key else []
            resume_run_id = resume_run_id or next(iter(unfinished), None)
            run = self._reopen(client, resume_run_id) if resume_run_id else None
            if run is None:
                # The key goes in with the run itself: a kill right after creating it must not leave a run
                # that the next attempt cannot find.
                run = client.create_run(experiment_id, run_name=run_name, tags=key_tag or None)
            self.run_id, self._open = run.info.run_id, True
            for orphan in unfinished:
                if orphan != self.run_id:
                    client.set_terminated(orphan, "KILLED")
            self._log_params(client, run, flat_params)
            self.set_tags(all_tags)
        return self.run_id if self.active else None

    def _unfinished_runs(self, client: Any, experiment_id: str, run_key: str) -> list[str]:
        """Ids of the RUNNING runs tagged with ``run_key``, newest first."""
        runs = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}' and attributes.status = 'RUNNING'",
            order_by=["attributes.start_time DESC"],
        )
        return [run.info.run_id for run in runs]

    def _connect(self) -> Any:
        if self._client is None:
            disable_telemetry()  # before the first `import mlflow` of this process
            from mlflow import MlflowClient

            with _store_setup_lock(self.tracking_uri):
                client = _LockRetryingClient(MlflowClient(tracking_uri=self.tracking_uri), self.lock_retry_delays)
                client.search_experiments(max_results=1)  # opens the store: creates or migrates its tables
            self._client = client
        return self._client

    def _experiment_id(self, client: Any) -> str:
        from mlflow.exceptions import MlflowException  # mlflow loads only once tracking starts (module docstring)

        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            try:
                return client.create_experiment(
                    self.experiment, artifact_location=_artifact_location(self.tracking_uri, self.experiment),
                    tags={EXPERIMENT_KIND_TAG: TRAINING_KIND},
                )
            except MlflowException:
                # Another seed's process may have created it a moment ago.
                exp = client.get_experiment_by_name(self.experiment)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            # A deleted experiment still owns its name; bring it back rather than fail every run.
            client.restore_experiment(exp.experiment_id)
        if exp.tags.get(EXPERIMENT_KIND_TAG) is None:  # made before isdarts set the kind (tagged once restored)
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
        return exp.experiment_id

    def _reopen(self, client: Any, run_id: str) -> Any:
        """The run to continue, set back to RUNNING; None (with a warning) if it is gone."""
        from mlflow.exceptions import MlflowException  # mlflow loads only once tracking starts (module docstring)

        try:
            run = client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            run = None
        if run is None or run.info.lifecycle_stage == "deleted":
            self._warn(f"cannot resume MLflow run {run_id}: not in this store or deleted; starting a new run")
            return None
        client.update_run(run_id, status="RUNNING")
        resumes = int(run.data.tags.get("isdarts.resume_count", "0")) + 1
        client.set_tag(run_id, "isdarts.resume_count", str(resumes))
        return run

    def _log_params(self, client: Any, run: Any, params: dict[str, str]) -> None:
        from mlflow.entities import Param  # mlflow loads only once tracking starts (module docstring)

        params = {_key(k): v for k, v in params.items()}
        existing = run.data.params
        if changed := sorted(k for k, v in params.items() if k in existing and existing[k] != v):
            self._warn(f"resumed run {run.info.run_id} keeps its original values of params {changed}")
        new = [Param(k, v) for k, v in params.items() if k not in existing]
        for chunk in _chunks(new, _MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run.info.run_id, params=chunk)

    def end(self, status: str = "FINISHED") -> None:
        """Close the run as FINISHED, FAILED or KILLED; later calls are no-ops."""
        if self.backlog is not None and self.backlog.status is None:
            self.backlog.status = status if status in TERMINAL_STATUSES else "FAILED"
        if not self.active:
            return
        if status not in TERMINAL_STATUSES:
            self._warn(f"unknown run status {status!r}, using FAILED")
            status = "FAILED"
        with self._guard(f"end run {self.run_id} as {status}"):
            self._client.set_terminated(self.run_id, status)
        self._open = False

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")

    # -- logging ----------------------------------------------------------------------------------

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log one step's metrics in a single batch (a search logs ~40 per epoch).

        NaN goes to MLflow as it is. +-inf is left out: MLflow's SQL store would clamp it to the largest
        float, a point at 1.8e308 that flattens every other line of its chart (the IIM of an op that can no
        longer be chosen is infinite). Values that are not numbers at all are skipped with a warning.
        """
        if not self.active and self.backlog is None:
            return
        numbers, skipped = [], []
        timestamp, step = int(time.time() * 1000), int(step)
        for name, value in metrics.items():
            try:
                number = float(value)  # numpy and 0-d torch scalars too
            except Exception:  # None, strings, multi-element tensors: not a metric
                skipped.append(str(name))
                continue
            if not math.isinf(number):
                numbers.append((_key(name), number, timestamp, step))
        if self.active:
            from mlflow.entities import Metric  # mlflow loads only once tracking starts (module docstring)

            with self._guard(f"log {len(metrics)} metrics at step {step}"):
                for chunk in _chunks([Metric(*m) for m in numbers], _MAX_METRICS_PER_BATCH):
                    self._client.log_batch(self.run_id, metrics=chunk)
                numbers = []
        if self.backlog is not None:
            self.backlog.metrics.extend(numbers)
        if skipped:
            # No step in the text, so Python's default filter shows it once, not every epoch.
            self._warn(f"skipped non-numeric metrics {sorted(skipped)}")

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values become strings)."""
        tags = {_key(k): str(v) for k, v in tags.items()}
        if self.active:
            from mlflow.entities import RunTag  # mlflow loads only once tracking starts (module docstring)

            with self._guard(f"set tags {sorted(tags)}"):
                for chunk in _chunks([RunTag(k, v) for k, v in tags.items()], _MAX_PARAMS_TAGS_PER_BATCH):
                    self._client.log_batch(self.run_id, tags=chunk)
                return
        if self.backlog is not None:
            self.backlog.tags.update(tags)

    def log_artifact(self, path: PathArg, artifact_path: str | None = None) -> None:
        """Copy a file (or a directory's contents) into the run's artifacts."""
        if not self.active:
            return
        path = Path(path)
        if not path.exists():
            self._warn(f"artifact {path} does not exist; not logged")
            return
        with self._guard(f"log artifact {path}"):
            if path.is_dir():
                self._client.log_artifacts(self.run_id, str(path), artifact_path)
            else:
                self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_model(
        self,
        model: Any,
        input_example: Any,
        output_example: Any,
        *,
        name: str = MODEL_ARTIFACT,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        step: int = 0,
    ) -> str | None:
        """Log a torch module as the run's MLflow model `name` (``runs:/<run id>/<name>``); its URI, or None.

        Saved as MLflow's ``pt2`` (torch.export), which `mlflow.pytorch.load_model` loads with torch alone and
        without the pickle deserialisation MLflow 3 refuses by default. The numpy batches `input_example` and
        `output_example` (what `model` returns for it) give the signature, batch dimension free. The pip
        requirements are given, so MLflow infers nothing (that would load the model again in a subprocess).
        The model belongs to the run's experiment and carries `params`, `tags` and `metadata`; the run's
        metrics at `step` are linked to it. A failure warns and leaves tracking on: the rest of the run is in.
        """
        if not self.active:
            return None
        model_id = None
        try:
            # mlflow loads only once tracking starts (module docstring)
            import mlflow.pytorch
            from mlflow.models import infer_signature

            experiment_id = self._client.get_run(self.run_id).info.experiment_id
            # Made here, not by log_model: that would file it under the fluent API's current experiment (the
            # default one), not this run's.
            logged = self._client.create_logged_model(
                experiment_id, name=name, source_run_id=self.run_id,
                params={_key(k): str(v) for k, v in (params or {}).items()},
                tags={_key(k): str(v) for k, v in (tags or {}).items()},
            )
            model_id = logged.model_id
            with _global_tracking_uri(self.tracking_uri):  # log_model writes to the global URI's store
                info = call_with_lock_retry(
                    mlflow.pytorch.log_model, model, delays=self.lock_retry_delays, name=name, model_id=model_id,
                    run_id=self.run_id, step=step,
                    signature=infer_signature(input_example, output_example), input_example=input_example,
                    serialization_format="pt2", pip_requirements=[f"torch=={_torch_version()}"],
                    metadata=json.loads(json.dumps(dict(metadata or {}), default=_jsonable)),
                    validate_serving_input=False,  # the caller checked the model; this would load it again
                )
        except Exception as exc:
            self._warn(f"MLflow model {name!r} not logged to run {self.run_id} ({type(exc).__name__}: {exc}); "
                       "the run's other records are kept")
            if model_id is not None:  # not left PENDING for ever
                with contextlib.suppress(Exception):
                    self._client.finalize_logged_model(model_id, "FAILED")
            return None
        return info.model_uri

    def log_dict(self, d: Mapping[str, Any], artifact_file: str) -> None:
        """Write ``d`` as a JSON (or ``.yaml``) artifact; numpy/torch values are converted first."""
        if not self.active:
            return
        with self._guard(f"log dict artifact {artifact_file}"):
            plain = json.loads(json.dumps(d, default=_jsonable, allow_nan=True))
            self._client.log_dict(self.run_id, plain, artifact_file)


__all__ = [
    "Tracker",
    "TrackingWarning",
    "disable_telemetry",
    "flatten_params",
    "project_root",
    "resolve_tracking_uri",
    "standard_tags",
]
