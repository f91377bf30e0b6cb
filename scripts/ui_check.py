"""Open the MLflow UI as a person would, in headless Chromium, and fail if a search run's records are not shown.

    python scripts/ui_check.py                         # a fresh smoke store: one NB201 IS-DARTS search
    python scripts/ui_check.py --store mlflow.db       # the store `dvc repro` made (or the smoke pipeline's)

It starts `mlflow ui` on a free localhost port over the store, loads six pages in headless Chromium (the
experiments list, the NB201 experiment's runs table, one IS-DARTS search run's overview, its artifacts, its
model-metrics charts and the IIM of one edge's ops on one chart), saves a screenshot and the rendered DOM of
each under --out, and checks the rendered text: the experiment and run are listed, the run's metrics and
tags are shown, the genotype artifact is there, and the IIM chart has drawn its lines. Look at the
screenshots too: the text checks cannot see a chart that renders wrongly. Without Chromium
(`apt-get install chromium`) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from isdarts.tracking import UI_TRAINING_MODE  # noqa: E402 (after the path set-up, so a plain checkout works)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# MLflow 3.17 opens every experiment in its GenAI mode (traces, "No data") unless the URL asks for the
# model-training mode; `isdarts ui` prints links with it for the same reason.
TRAINING_MODE = UI_TRAINING_MODE
SERVER_START_S = 180  # mlflow ui imports a lot; on a busy 2-core machine it takes a minute or more
# Chromium's virtual time runs the page's timers and fetches without waiting in real time; the charts load
# lazily after the metric histories arrive; 90 s of it draws the first screen of them on the smoke store.
PAGE_BUDGET_MS = 90_000


@dataclass
class Page:
    name: str
    url: str
    expect: list[str]  # strings the rendered page's text must hold


NO_CHROMIUM = ("skipped: no Chromium on PATH (looked for " + ", ".join(CHROMIUM_NAMES) + "); install it with "
               "`apt-get install chromium` and run again")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smoke_store(base: Path) -> Path:
    """A store holding what the smoke pipeline logs for one NB201 IS-DARTS search (IIM measured every epoch)."""
    from fault_check import Scratch  # the fault suite's throwaway project: smoke params, the real CIFAR subset

    scratch = Scratch(base)
    for args in (["prepare-data"], [*scratch.search_args("isdarts"), "--method", "isdarts"]):
        result = scratch.run(*args)
        if result.returncode != 0:
            raise SystemExit(f"isdarts {args[0]} failed in the smoke project: {result.stderr[-800:]}")
    return scratch.store


def search_run(store: Path) -> tuple[str, str, str, list[str]]:
    """(experiment id, run id, run name, its IIM metric keys) of the newest finished IS-DARTS NB201 search."""
    with sqlite3.connect(store) as db:
        row = db.execute(
            "select e.experiment_id, r.run_uuid, r.name from runs r join experiments e using (experiment_id) "
            "join tags t on t.run_uuid = r.run_uuid "
            "where e.name = 'isdarts-nb201' and t.key = 'method' and t.value = 'isdarts' and r.status = 'FINISHED' "
            "order by r.start_time desc limit 1"
        ).fetchone()
        if row is None:
            raise SystemExit(f"{store} holds no finished IS-DARTS run in experiment isdarts-nb201: run a search first")
        keys = [k for (k,) in db.execute(
            "select distinct key from metrics where run_uuid = ? and key like 'iim/%' order by key", (row[1],)
        )]
    return str(row[0]), row[1], row[2], keys


def start_ui(store: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{store.resolve()}",
           "--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as sink:
        server = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"mlflow ui exited with {server.returncode}; its log: {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(1)
    server.terminate()
    raise SystemExit(f"mlflow ui did not answer on port {port} within {SERVER_START_S} s; its log: {log}")


def page_text(dom: str) -> str:
    """The text a reader sees: tags, scripts and styles stripped, whitespace collapsed."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def render(chromium: str, page: Page, out: Path) -> str:
    """Screenshot the page into out/<name>.png and return its rendered text (also kept as out/<name>.html)."""
    flags = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1500,1100", f"--virtual-time-budget={PAGE_BUDGET_MS}"]
    for extra in ([f"--screenshot={out / (page.name + '.png')}"], ["--dump-dom"]):
        result = subprocess.run([*flags, *extra, page.url], capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise SystemExit(f"chromium failed on {page.url}: {result.stderr[-500:]}")
    (out / f"{page.name}.html").write_text(result.stdout)
    return page_text(result.stdout)


def pages(port: int, experiment: str, run: str, run_name: str, iim_keys: list[str]) -> list[Page]:
    base = f"http://127.0.0.1:{port}/#"
    run_url = f"{base}/experiments/{experiment}/runs/{run}"
    # The IIM of every op on the first edge, on one chart against the epoch (MLflow's metric page).
    edge = iim_keys[0].rsplit("/", 1)[0]
    edge_keys = [k for k in iim_keys if k.rsplit("/", 1)[0] == edge]
    chart = "&".join([
        "runs=" + quote(json.dumps([run])), "experiments=" + quote(json.dumps([experiment])),
        "metric=" + quote(json.dumps(edge_keys[0])), "plot_metric_keys=" + quote(json.dumps(edge_keys)),
        "x_axis=step", TRAINING_MODE,
    ])
    # A chart's legend reads "<run name> (<metric key>)" once its line is drawn.
    return [
        Page("1_experiments", f"{base}/experiments?{TRAINING_MODE}", ["isdarts-nb201"]),
        Page("2_runs_table", f"{base}/experiments/{experiment}?{TRAINING_MODE}", [run_name, "Runs"]),
        Page("3_run_overview", f"{run_url}?{TRAINING_MODE}",
             ["train_loss", "test_acc", "cell/cifar10_test", "alive_ops", iim_keys[0], "isdarts", "nb201"]),
        Page("4_run_artifacts", f"{run_url}/artifacts?{TRAINING_MODE}", ["genotype.json"]),
        # Its grid of charts, one section per metric group; whether the first screen of charts has drawn
        # depends on how fast the server answers, so the lines themselves are checked on the next page.
        Page("5_run_charts", f"{run_url}/model-metrics?{TRAINING_MODE}", ["alive_ops (", "cell (", f"{edge} ("]),
        Page("6_iim_chart", f"{base}/metric?{chart}", [f"{run_name} ({key})" for key in edge_keys]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="an MLflow sqlite file (default: make a smoke store)")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "ui_check", help="screenshots and DOMs")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print(NO_CHROMIUM)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="isdarts-ui-") as tmp:
        store = args.store or smoke_store(Path(tmp))
        if not store.is_file():
            raise SystemExit(f"no MLflow store at {store}")
        experiment, run, run_name, iim_keys = search_run(store)
        if not iim_keys:
            raise SystemExit(f"run {run} has no IIM metrics: was it an IS-DARTS search that measured IIM?")
        port = free_port()
        server = start_ui(store, port, args.out / "mlflow_ui.log")
        try:
            failures, checked = 0, pages(port, experiment, run, run_name, iim_keys)
            for page in checked:
                text = render(chromium, page, args.out)
                missing = [s for s in page.expect if s not in text]
                failures += bool(missing)
                verdict = "ok" if not missing else "MISSING " + ", ".join(repr(s) for s in missing)
                print(f"{page.name:18s} {verdict}   {args.out / (page.name + '.png')}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"MLflow UI check: {len(checked) - failures}/{len(checked)} pages show what they should (store {store})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
