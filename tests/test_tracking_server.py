"""`isdarts tracking-server` for real: a throwaway PostgreSQL (tests/postgres_service.py), one `mlflow server`
subprocess for the module started through our CLI, and our Tracker, several processes and a real tiny search
logging to it over HTTP. Bad input must stop the command with a clear message before any server starts."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from isdarts.cli import main
from isdarts.tracking import Tracker, TrackingWarning

pytest_plugins = ("postgres_service",)

ROOT = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = 180  # a cold `mlflow server` on a busy 2-core machine: imports, migrations, workers


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "isdarts.cli", *args]


@dataclass(frozen=True)
class Server:
    url: str
    port: int
    artifacts: Path
    output: Path  # what the command printed


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`isdarts tracking-server` on a free port (two workers, as a real one has several), up and answering."""
    base = tmp_path_factory.mktemp("tracking-server")
    artifacts, output, port = base / "mlartifacts", base / "server.log", _free_port()
    cmd = _cli("tracking-server", "--backend-store-uri", postgres.uri, "--artifacts-destination", str(artifacts),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "2")
    with output.open("w") as sink:
        # Its own process group: mlflow server starts uvicorn, which starts the workers; all go at the end.
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tracking server did not come up (exit {proc.poll()}):\n{output.read_text()[-3000:]}")
            time.sleep(0.5)
        yield Server(f"http://127.0.0.1:{port}", port, artifacts, output)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)  # a graceful stop is not what is tested here
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_the_server_says_what_to_export_and_answers_compute_nodes_by_host_name(server: Server) -> None:
    assert f"export MLFLOW_TRACKING_URI={server.url}" in server.output.read_text()
    assert "tracking-pw" not in server.output.read_text()  # the password is never printed

    def status(host: str) -> int:
        request = urllib.request.Request(
            f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code

    # A node reaches the server by this machine's name, which MLflow's default Host allowlist refuses.
    assert status(f"{socket.gethostname()}:{server.port}") == 200
    assert status(f"evil.example.com:{server.port}") == 403  # the DNS-rebinding guard is still on


def test_tracker_logs_through_the_server_into_postgresql(
    server: Server, postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow import MlflowClient

    params = {"search": {"lr": 0.025, "iim": {"batch_size": 64}}, "seed": 3}
    first = Tracker("server-roundtrip", tracking_uri=server.url)
    run_id = first.start("nb201-isdarts-seed3", params=params, tags={"method": "isdarts", "seed": 3}, run_key="k3")
    assert run_id is not None
    first.log_metrics({"train_loss": 1.0, "iim/1<-0/none": 0.0, "nan": math.nan, "inf": math.inf}, step=0)
    # Killed here (no end): the re-run finds the RUNNING run by its key and goes on in it.
    second = Tracker("server-roundtrip", tracking_uri=server.url)
    assert second.start("nb201-isdarts-seed3", params=params, tags={"method": "isdarts"}, run_key="k3") == run_id
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackingWarning)  # any tracking failure fails the test
        for step in (1, 2):
            second.log_metrics({"train_loss": 1.0 / (step + 1), "iim/1<-0/none": step * 0.5, "nan": math.nan},
                               step=step)
        genotype = tmp_path / "genotype.json"
        genotype.write_text('{"arch": "|nor_conv_3x3~0|"}')
        second.log_artifact(genotype)
        second.log_dict({"epochs": [1, 2, 3]}, "history.json")
        second.set_tags({"arch_str": "|nor_conv_3x3~0|"})
        torch.manual_seed(0)
        net, example = torch.nn.Linear(4, 2).eval(), np.ones((2, 4), dtype=np.float32)
        with torch.no_grad():
            expected = net(torch.from_numpy(example))
        model_uri = second.log_model(net, example, expected.numpy(), params={"width": 4}, tags={"method": "isdarts"})
        second.end()
    assert model_uri is not None

    client = MlflowClient(tracking_uri=server.url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["isdarts.resume_count"] == "1"
    assert run.data.params == {"search.lr": "0.025", "search.iim.batch_size": "64", "seed": "3"}
    assert run.data.tags["method"] == "isdarts" and run.data.tags["arch_str"] == "|nor_conv_3x3~0|"
    assert _history(client, run_id, "train_loss") == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert _history(client, run_id, "iim/1_from_0/none") == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert [s for s, _ in _history(client, run_id, "nan")] == [0, 1, 2]
    assert all(math.isnan(v) for _, v in _history(client, run_id, "nan"))
    assert _history(client, run_id, "inf") == []
    assert sorted(f.path for f in client.list_artifacts(run_id)) == ["genotype.json", "history.json"]
    assert json.loads(Path(client.download_artifacts(run_id, "genotype.json", str(tmp_path / "dl"))).read_text()) \
        == {"arch": "|nor_conv_3x3~0|"}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)  # where a models:/ URI is looked up, as a user would
    loaded = mlflow.pytorch.load_model(model_uri)  # through the server: no file system access needed
    torch.testing.assert_close(loaded(torch.from_numpy(example)), expected)
    assert client.get_logged_model(model_uri.removeprefix("models:/")).source_run_id == run_id

    # The rows are PostgreSQL's, the files are in the artifacts directory the server was given.
    assert postgres.query("select status from runs where run_uuid = %s", (run_id,)) == [("FINISHED",)]
    assert postgres.query("select count(*) from metrics where run_uuid = %s and key = 'train_loss'", (run_id,)) \
        == [(3,)]
    assert postgres.query("select value from params where run_uuid = %s and key = 'seed'", (run_id,)) == [("3",)]
    saved = server.artifacts / run.info.experiment_id / run_id / "artifacts" / "genotype.json"
    assert json.loads(saved.read_text()) == {"arch": "|nor_conv_3x3~0|"}


def test_processes_logging_at_once_lose_no_run_and_no_metric(server: Server, postgres) -> None:
    script = _load_script("mlflow_concurrency")
    processes, epochs, metrics = 4, 20, 20
    result = script.run_on_store(server.url, processes, epochs, metrics, lead_in_s=5)
    assert result["workers crashed"] == 0 and result["trainings that lost tracking"] == 0
    assert result["runs finished"] == processes and result["metric values kept %"] == 100
    # Counted again in the database itself: every value of every run is a row.
    [(rows,)] = postgres.query(
        "select count(*) from metrics m join runs r using (run_uuid) join experiments e using (experiment_id) "
        "where e.name = %s and r.status = 'FINISHED'", (result["experiment"],)
    )
    assert rows == processes * epochs * metrics


@pytest.mark.slow
def test_a_search_logs_to_the_server_what_it_logs_to_sqlite(server: Server, tmp_path: Path) -> None:
    """One tiny real search logged to the server and, side by side, the same search logged to SQLite: the
    server holds the same run (params, tags, metric keys and steps, genotype artifact) as the SQLite store."""
    from mlflow import MlflowClient

    fault_check = _load_script("fault_check")
    if not (fault_check.SHARED_DIR / "data" / "cifar10-subset").is_dir():
        pytest.skip(f"shared data absent at {fault_check.SHARED_DIR} (only CI and dev machines have it)")
    scratch = fault_check.Scratch(tmp_path / "project")
    prepared = scratch.run("prepare-data")
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    stores = {"server": server.url, "sqlite": scratch.store_uri}
    searches = {
        name: scratch.start(*scratch.search_args(name), env={**scratch.env, "MLFLOW_TRACKING_URI": uri})
        for name, uri in stores.items()
    }
    for name, proc in searches.items():
        _, stderr = proc.communicate(timeout=fault_check.RUN_TIMEOUT_S)
        assert proc.returncode == 0, f"{name} search failed: {stderr[-2000:]}"
        assert "TrackingWarning" not in stderr and "tracking disabled" not in stderr, stderr[-2000:]

    logged = {}
    for name, uri in stores.items():
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name("isdarts-nb201")
        [run] = client.search_runs([experiment.experiment_id], "tags.method = 'isdarts'")
        assert run.info.status == "FINISHED"
        run_id = run.info.run_id
        genotype = client.download_artifacts(run_id, "genotype.json", str(tmp_path / name))
        logged[name] = {
            "params": run.data.params,
            "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
            "steps": {key: [s for s, _ in _history(client, run_id, key)] for key in run.data.metrics},
            "artifacts": sorted(f.path for f in client.list_artifacts(run_id)),
            "genotype": json.loads(Path(genotype).read_text()),
        }
    server_run, sqlite_run = logged["server"], logged["sqlite"]
    assert server_run["params"] == sqlite_run["params"] and server_run["params"]
    assert set(server_run["tags"]) == set(sqlite_run["tags"])
    for key in ("method", "space", "seed", "profile", "genotype"):
        assert server_run["tags"][key] == sqlite_run["tags"][key], key
    assert server_run["steps"] == sqlite_run["steps"]
    assert len(server_run["steps"]["train_loss"]) == scratch.raw["nb201"]["search"]["epochs"]
    assert any(key.startswith("iim/") for key in server_run["steps"])
    assert server_run["artifacts"] == sqlite_run["artifacts"] == ["genotype.json"]
    assert server_run["genotype"] == sqlite_run["genotype"]
    assert server_run["genotype"] == json.loads((scratch.dir / "out" / "server" / "genotype.json").read_text())


BAD_INPUT = {  # what is wrong: (backend URI, artifacts dir, what the message must say); {pg} is the live server
    "a SQLite URI": ("sqlite:////tmp/mlflow.db", "{tmp}/mlartifacts", ["not a PostgreSQL URI", "postgresql://user"]),
    "no database in the URI": ("postgresql://isdarts@127.0.0.1:{port}", "{tmp}/mlartifacts", ["names no database"]),
    "the database down": ("postgresql://isdarts@127.0.0.1:{free}/mlflow", "{tmp}/mlartifacts",
                          ["cannot connect to PostgreSQL database 'mlflow' on 127.0.0.1:{free} as user 'isdarts'",
                           "Connection refused", "listen_addresses"]),
    "a wrong password": ("postgresql://isdarts:not-the-password@127.0.0.1:{port}/mlflow", "{tmp}/mlartifacts",
                         ["cannot connect", "password authentication failed", "PGPASSWORD"]),
    "no database of that name": ("{pg}x", "{tmp}/mlartifacts", ['database "mlflowx" does not exist', "createdb"]),
    "the artifacts dir's parent missing": ("{pg}", "{tmp}/absent/mlartifacts",
                                           ["parent folder {tmp}/absent does not exist"]),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_stops_before_any_server_starts(
    case: str, postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 2 with one `isdarts: error:` line naming the problem and the fix, and no server: the command never
    gets as far as becoming `mlflow server` (run in this process, so a failed check must not exec it)."""
    import isdarts.tracking_server

    def server_would_start(*args: object) -> None:
        raise AssertionError(f"{case}: the checks passed and mlflow server would start")

    monkeypatch.setattr(isdarts.tracking_server.os, "execve", server_would_start)
    fill = {"pg": postgres.uri, "port": postgres.port, "free": _free_port(), "tmp": tmp_path}
    uri, artifacts, expected = (v.format(**fill) if isinstance(v, str) else [e.format(**fill) for e in v]
                                for v in BAD_INPUT[case])
    code = main(["tracking-server", "--backend-store-uri", uri, "--artifacts-destination", artifacts])
    out, err = capsys.readouterr()
    assert code == 2, f"{case}: exit {code}\n{out}\n{err}"
    assert err.startswith("isdarts: error:") and "Traceback" not in err and "export" not in out, err
    assert all(e in err for e in expected), err
    assert "not-the-password" not in err and postgres.password not in err  # a URI's password is never shown
    assert list(tmp_path.iterdir()) == []  # nothing made: no artifacts dir, no parent


def test_a_busy_port_stops_before_the_server_starts(
    postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import isdarts.tracking_server

    monkeypatch.setattr(isdarts.tracking_server.os, "execve", lambda *a: pytest.fail("mlflow server would start"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["tracking-server", "--backend-store-uri", postgres.uri, "--artifacts-destination",
                     str(tmp_path / "art"), "--host", "127.0.0.1", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err, err


def test_print_command_prints_the_mlflow_server_command_without_the_password(
    postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifacts = tmp_path / "mlartifacts"
    code = main(["tracking-server", "--backend-store-uri", postgres.uri, "--artifacts-destination", str(artifacts),
                 "--port", "5123", "--workers", "3", "--print-command"])
    out, err = capsys.readouterr()
    assert code == 0
    command = out.strip()
    assert f"MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://isdarts@127.0.0.1:{postgres.port}/mlflow" in command
    assert " -m mlflow server --serve-artifacts --artifacts-destination " + str(artifacts) in command
    assert "--host 0.0.0.0 --port 5123 --workers 3 --allowed-hosts " in command
    assert postgres.password not in out + err and "PGPASSWORD" in err
    assert not artifacts.exists()  # printing changes nothing
