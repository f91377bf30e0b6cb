"""The fault suite: what long jobs on shared machines meet, tried on the smoke profile in a scratch copy.

    .venv/bin/python scripts/fault_check.py                   # everything, a few minutes on 2 cores
    .venv/bin/python scripts/fault_check.py --seed 7 --kills 10 --only params,kills

Every run happens in a fresh scratch folder (a copy of the package, the smoke params, the real CIFAR-10
subset reduced to a few hundred images), through the `isdarts` command line in subprocesses, as a user
would meet it. Kill points are drawn at random from the printed seed, so a failure can be replayed. One
line per kind is printed, e.g. `kills survived 10/10`; the exit code is non-zero unless all are perfect.
The fast part runs in CI as tests (tests/test_faults.py imports this module).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from isdarts.config.params import params_from_dict
from isdarts.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("ISDARTS_SHARED_DIR", ROOT.parent / "shared"))
TIMING_KEYS = frozenset({
    "images_per_s", "epoch_seconds", "search_seconds", "search_hours", "images_per_s_mean", "train_seconds",
    "cost_hours", "device_name",
})
RUN_TIMEOUT_S = 600


# -- malformed params ------------------------------------------------------------------------------------


def _leaves(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every (path, value) of a parsed YAML tree, mappings and lists included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,), value
            yield from _leaves(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield path + (i,), value
            yield from _leaves(value, path + (i,))


def _mistakes(value: Any) -> list[Any]:
    """Values that are wrong for a key whose correct value is `value`, whatever its range: another shape
    (a mapping or list where a scalar belongs and the reverse), a missing value, a string for a number,
    a number for a string, NaN, an empty string."""
    wrong: list[Any] = [{"key": "value"}, [["nested"]], ""]
    if value is not None:
        wrong.append(None)
    if isinstance(value, bool):
        wrong += ["yes please", 2]
    elif isinstance(value, (int, float)):
        wrong += ["twelve", float("nan"), [value]]
    elif isinstance(value, str) and value != "all":  # "all" keys take a count too
        wrong += [12345]
    elif isinstance(value, (dict, list)):
        wrong += [7, "text"]
    return [w for w in wrong if not (type(w) is type(value) and w == value)]


def bad_params_cases(params_file: Path) -> Iterator[tuple[str, dict]]:
    """(description, raw params) for every leaf of `params_file` and every mistake of its kind."""
    raw = yaml.safe_load(params_file.read_text())
    for path, value in list(_leaves(raw)):
        if path[-1] == "profile":
            continue  # a free-form label
        for bad in _mistakes(value):
            if bad is None and path[0] == "data":
                continue  # data folders may be null (none given)
            edited = copy.deepcopy(raw)
            node = edited
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = bad
            yield f"{params_file.name}: {'.'.join(map(str, path))} = {bad!r}", edited


def check_bad_params(params_files: list[Path]) -> Score:
    """Each malformed edit must be refused with a ConfigError (not another exception, not accepted)."""
    score = Score("bad params refused")
    for what, raw in (case for f in params_files for case in bad_params_cases(f)):
        try:
            params_from_dict(raw)
        except ConfigError as exc:
            score.add(what, "params.yaml:" in str(exc), f"message does not name the file: {exc}")
        except Exception as exc:  # noqa: BLE001 - anything else is the failure being counted
            score.add(what, False, f"crashed with {type(exc).__name__}: {exc}")
        else:
            score.add(what, False, "accepted")
    return score


# -- the scratch project ---------------------------------------------------------------------------------


@dataclass
class Score:
    """How many cases of one kind of fault came out right, and why the others did not."""

    label: str
    passed: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)

    def add(self, case: str, ok: bool, why: str = "") -> None:
        self.total += 1
        self.passed += ok
        self.cases.append(f"{'ok  ' if ok else 'FAIL'} {case}")
        if not ok:
            self.failures.append(f"{case}: {why}")

    @property
    def perfect(self) -> bool:
        return self.passed == self.total

    def line(self) -> str:
        return f"{self.label} {self.passed}/{self.total}"


@dataclass
class Count:
    """A count of something that must not happen (runs left RUNNING)."""

    label: str
    value: int
    failures: list[str] = field(default_factory=list)

    @property
    def perfect(self) -> bool:
        return self.value == 0

    def line(self) -> str:
        return f"{self.label} {self.value}"


@dataclass
class Result:
    returncode: int
    stderr: str


class Scratch:
    """A throwaway project: a copy of the package, smoke params and the CIFAR subset, run via subprocesses."""

    def __init__(self, base: Path, *, epochs: int = 6) -> None:
        self.dir = base
        shutil.copytree(ROOT / "isdarts", base / "code" / "isdarts", ignore=shutil.ignore_patterns("__pycache__"))
        self.cifar = base / "cifar10-subset"
        shutil.copytree(SHARED_DIR / "data" / "cifar10-subset", self.cifar)
        raw = yaml.safe_load((ROOT / "profiles" / "quick.yaml").read_text())
        raw.update(profile="smoke", device="cpu")
        raw["data"].update(cifar10_root=str(base / "absent"), subset_fallback=str(self.cifar), download=False)
        raw["nb201"]["seeds"] = [0]
        raw["nb201"]["search"].update(
            C=4, N=1, epochs=epochs, batch_size=32, log_every=1, image_size=16, train_images=192, test_images=64
        )
        raw["nb201"]["options"]["isdarts"]["iim"].update(n_samples=64, batch_size=32, every_epoch=True)
        self.raw = raw
        self.write_params(raw)
        self.env = {
            **os.environ, "PYTHONPATH": str(base / "code"), "MLFLOW_TRACKING_URI": self.store_uri,
            "ISDARTS_LOG_DIR": str(base / "logs"), "OMP_NUM_THREADS": "1",
        }

    @property
    def store(self) -> Path:
        return self.dir / "mlflow.db"

    @property
    def store_uri(self) -> str:
        return f"sqlite:///{self.store}"

    def write_params(self, raw: dict) -> None:
        (self.dir / "params.yaml").write_text(yaml.safe_dump(raw))

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "isdarts.cli", *args]

    def search_args(self, name: str) -> list[str]:
        return ["search", "--seed", "0", "--out", f"out/{name}", "--checkpoints", f"ckpt/{name}", "--no-progress"]

    def run(self, *args: str, env: dict | None = None, limit_file_bytes: int | None = None) -> Result:
        def limit() -> None:  # a full disk, as the kernel reports it: writes past the limit fail with EFBIG
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

        proc = subprocess.run(
            self.command(*args), cwd=self.dir, env=env or self.env, capture_output=True, text=True,
            timeout=RUN_TIMEOUT_S, preexec_fn=limit if limit_file_bytes else None,
        )
        return Result(proc.returncode, proc.stderr)

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(*args), cwd=self.dir, env=env or self.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )

    def outputs(self, name: str) -> dict[str, Any] | None:
        """The search outputs of run `name` without timings, or None if any is missing."""
        out = self.dir / "out" / name
        docs = {}
        for file in ("genotype.json", "metrics.json", "history.json"):
            if not (out / file).is_file():
                return None
            docs[file] = _without_timing(json.loads((out / file).read_text()))
        return docs

    def runs(self) -> list[tuple[str, str]]:
        """(run id, status) of every run in the MLflow store."""
        if not self.store.exists():
            return []
        with sqlite3.connect(self.store) as db:
            return db.execute("select run_uuid, status from runs").fetchall()


def _without_timing(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _without_timing(v) for k, v in doc.items() if k not in TIMING_KEYS}
    if isinstance(doc, list):
        return [_without_timing(v) for v in doc]
    return doc


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _one_error_line(result: Result) -> bool:
    """The CLI's promise: an `isdarts: error:` line and no traceback on the terminal."""
    return "isdarts: error:" in result.stderr and "Traceback" not in result.stderr


# -- corrupt inputs --------------------------------------------------------------------------------------


def check_corrupt_inputs(scratch: Scratch) -> Score:
    """Each corrupt input is detected: non-zero exit, one error line naming the file, nothing half-written."""
    score = Score("corrupt files detected")
    prepared = scratch.dir / "data" / "prepared"
    manifest_before = _digest(prepared / "manifest.json")

    def expect(case: str, result: Result, names: str, extra_ok: bool = True) -> None:
        ok = result.returncode != 0 and _one_error_line(result) and names in result.stderr and extra_ok
        score.add(case, ok, f"exit {result.returncode}, stderr: {result.stderr[-400:]!r}, outputs intact: {extra_ok}")

    # A truncated CIFAR batch file: the prepared data already there must stay as it was.
    bad_cifar = scratch.dir / "cifar-truncated"
    shutil.copytree(scratch.cifar, bad_cifar)
    batch = bad_cifar / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[: batch.stat().st_size // 2])
    raw = copy.deepcopy(scratch.raw)
    raw["data"]["subset_fallback"] = str(bad_cifar)
    scratch.write_params(raw)
    result = scratch.run("prepare-data")
    scratch.write_params(scratch.raw)
    expect("truncated CIFAR batch", result, "data_batch_1", _digest(prepared / "manifest.json") == manifest_before)

    # One byte flipped in the prepared npz.
    npz = prepared / "cifar10.npz"
    intact = npz.read_bytes()
    flipped = bytearray(intact)
    flipped[len(flipped) // 2] ^= 0xFF
    npz.write_bytes(bytes(flipped))
    expect("flipped byte in the prepared npz", scratch.run(*scratch.search_args("npz")), "cifar10.npz")
    npz.write_bytes(intact)

    # A genotype JSON with a wrong type.
    genotype = scratch.dir / "bad_genotype.json"
    genotype.write_text(json.dumps({"space": "darts", "normal": 3, "normal_concat": [2, 3, 4, 5],
                                    "reduce": "x", "reduce_concat": [2, 3, 4, 5]}))
    expect("genotype of a wrong type", scratch.run("retrain", "--seed", "0", "--genotype", str(genotype)),
           "bad_genotype.json")

    # An edited NB201 table (one accuracy changed in the scratch copy of the package).
    table = scratch.dir / "code" / "isdarts" / "benchmark" / "data" / "nb201_acc200.csv"
    original = table.read_bytes()
    lines = original.split(b"\r\n")
    fields = lines[1].split(b",")
    fields[4] = b"99.99"
    lines[1] = b",".join(fields)
    table.write_bytes(b"\r\n".join(lines))
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    expect("edited NB201 table", scratch.run("lookup", arch), "nb201_acc200.csv")
    table.write_bytes(original)

    # A checkpoint cut short.
    scratch.run(*scratch.search_args("cut"))
    checkpoint = scratch.dir / "ckpt" / "cut" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    expect("checkpoint cut short", scratch.run(*scratch.search_args("cut")), "last.pt")

    # The disk fills up while a checkpoint is written: the previous checkpoint and outputs stay intact.
    assert scratch.run(*scratch.search_args("full")).returncode == 0
    kept = [*(scratch.dir / "ckpt" / "full").glob("*"), *(scratch.dir / "out" / "full").glob("*")]
    before = {p: _digest(p) for p in kept}
    raw = copy.deepcopy(scratch.raw)
    raw["nb201"]["search"]["lr"] = 0.02  # other settings: the search restarts and writes a new checkpoint
    scratch.write_params(raw)
    size = (scratch.dir / "ckpt" / "full" / "last.pt").stat().st_size
    result = scratch.run(*scratch.search_args("full"), limit_file_bytes=size // 2)
    scratch.write_params(scratch.raw)
    after = {p: _digest(p) for p in before}
    leftovers = [p.name for p in (scratch.dir / "ckpt" / "full").iterdir() if p.name.endswith(".tmp")]
    expect("disk full while writing a checkpoint", result, "last.pt", after == before and not leftovers)
    return score


# -- kills -----------------------------------------------------------------------------------------------


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], deadline_s: float, poll_s: float = 0.005) -> bool:
    """SIGKILL `proc` as soon as `ready()`; False if it ended (or the deadline passed) first."""
    deadline = time.monotonic() + deadline_s
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return False
        time.sleep(poll_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def _kill_point(scratch: Scratch, name: str, kind: str, rng: random.Random, duration: float) -> Callable[[], bool]:
    """When to kill search `name`: after a random delay, inside a random epoch's checkpoint write (so kills
    land before and after the first checkpoint), or once the first of its outputs is written."""
    if kind == "random time":
        deadline = time.monotonic() + rng.uniform(0.5, duration)
        return lambda: time.monotonic() > deadline
    if kind == "checkpoint write":
        epoch, ckpt = rng.randrange(1, scratch.raw["nb201"]["search"]["epochs"]), scratch.dir / "ckpt" / name
        seen = {"writes": 0, "in_write": False}

        def in_nth_write() -> bool:
            writing = ckpt.is_dir() and any(p.name.endswith(".tmp") for p in ckpt.iterdir())
            seen["writes"] += writing and not seen["in_write"]
            seen["in_write"] = writing
            return writing and seen["writes"] >= epoch

        return in_nth_write
    out = scratch.dir / "out" / name
    return lambda: (out / "history.json").exists()


KILL_KINDS = ("random time", "checkpoint write", "between outputs")


def check_kills(scratch: Scratch, rng: random.Random, n: int, tries: int = 8) -> tuple[Score, Count]:
    """`n` searches, each SIGKILLed once at a drawn point and re-run: each ends identical to an uninterrupted
    search, in one MLflow run. A kill point the search outran is drawn again (up to `tries` times)."""
    score = Score("kills survived")
    before = {run for run, _ in scratch.runs()}
    start = time.monotonic()
    assert scratch.run(*scratch.search_args("reference")).returncode == 0, "the uninterrupted search failed"
    duration = time.monotonic() - start
    reference = scratch.outputs("reference")
    names = ["reference"]
    for i in range(n):
        kind = KILL_KINDS[i % len(KILL_KINDS)]
        for attempt in range(tries):
            name = f"kill{i}-{attempt}"
            names.append(name)
            proc = scratch.start(*scratch.search_args(name))
            # A checkpoint write lasts a few milliseconds: watch for it without sleeping.
            poll_s = 0.0 if kind == "checkpoint write" else 0.005
            if _kill_when(proc, _kill_point(scratch, name, kind, rng, duration), duration * 3, poll_s):
                break
        else:
            score.add(f"kill {i} ({kind})", False, f"the search outran the kill point {tries} times")
            continue
        resumed = scratch.run(*scratch.search_args(name))
        same = resumed.returncode == 0 and scratch.outputs(name) == reference
        score.add(f"kill {i} ({kind})", same, f"exit {resumed.returncode}: {resumed.stderr[-300:]!r}")
    runs = [(run, status) for run, status in scratch.runs() if run not in before]
    score.add("one MLflow run per search", len(runs) == len(names), f"{len(runs)} runs for {len(names)} searches")
    return score, Count("zombie runs", sum(status == "RUNNING" for _, status in runs))


def check_zombies(scratch: Scratch, kills: int = 4) -> Score:
    """SIGKILLs inside the first epoch (run open, no checkpoint yet), then a re-run: one FINISHED run."""
    score = Score("kills before the first checkpoint leave one run")
    before = {run for run, _ in scratch.runs()}
    name = "zombie"
    checkpoint = scratch.dir / "ckpt" / name / "last.pt"

    def opened_attempts() -> int:
        """Attempts that have opened this search's run so far (1 + its resume count once it exists)."""
        try:
            with sqlite3.connect(scratch.store, timeout=1) as db:
                rows = db.execute(
                    "select r.run_uuid, t.value from runs r left join tags t on t.run_uuid = r.run_uuid "
                    "and t.key = 'isdarts.resume_count' where r.status = 'RUNNING'"
                ).fetchall()
        except sqlite3.Error:
            return 0
        return max((1 + int(count or 0) for run, count in rows if run not in before), default=0)

    for attempt in range(kills):
        proc = scratch.start(*scratch.search_args(name))
        killed = _kill_when(proc, lambda attempt=attempt: opened_attempts() > attempt, RUN_TIMEOUT_S)
        score.add(f"kill {attempt} inside the first epoch", killed and not checkpoint.exists(),
                  "the search reached its first checkpoint (or ended) before the kill")
    result = scratch.run(*scratch.search_args(name))
    new = [(run, status) for run, status in scratch.runs() if run not in before]
    score.add("re-run after kills", result.returncode == 0 and [s for _, s in new] == ["FINISHED"],
              f"runs of this search: {new}")
    return score


PREEMPTION_TRIES = 4


def _preempted_search(scratch: Scratch, name: str, delay_s: float) -> tuple[subprocess.Popen, str]:
    """Start search `name`, wait for its first checkpoint (the SIGTERM handler is in place), then `delay_s`, and
    send SIGTERM; the finished process and its stderr."""
    checkpoint = scratch.dir / "ckpt" / name / "last.pt"
    proc = scratch.start(*scratch.search_args(name))
    while not checkpoint.exists() and proc.poll() is None:
        time.sleep(0.005)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    return proc, stderr


def check_preemptions(scratch: Scratch, rng: random.Random, n: int, transfers: int = 2) -> Score:
    """`n` searches sent SIGTERM at a drawn moment after their first checkpoint (inside an epoch or between
    two): each stops with exit 143 and a line saying how to resume, and the re-run ends identical to an
    uninterrupted search, in the same MLflow run. Then `transfers` ImageNet transfers likewise."""
    score = Score("preemptions resumed")
    if scratch.outputs("reference") is None:
        assert scratch.run(*scratch.search_args("reference")).returncode == 0, "the uninterrupted search failed"
    reference = scratch.outputs("reference")
    before = {run for run, _ in scratch.runs()}
    # The delay is a share of the uninterrupted search's own time, so a fast machine draws short delays too;
    # a search that still ends first is sent again with half the delay (at most PREEMPTION_TRIES times).
    search_s = json.loads((scratch.dir / "out" / "reference" / "metrics.json").read_text())["search_seconds"]
    finished_early = 0  # each such search is an MLflow run of its own
    for i in range(n):
        name = f"term{i}"
        delay_s = rng.uniform(0.0, 0.6) * search_s
        for _ in range(PREEMPTION_TRIES):
            proc, stderr = _preempted_search(scratch, name, delay_s)
            if proc.returncode != 0:
                break
            finished_early += 1
            shutil.rmtree(scratch.dir / "out" / name)
            shutil.rmtree(scratch.dir / "ckpt" / name)
            delay_s /= 2
        if proc.returncode == 0:
            score.add(f"preemption {i}", False, f"the search ended before the signal {PREEMPTION_TRIES} times")
            continue
        stopped = proc.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in stderr and "resume" in stderr
        resumed = scratch.run(*scratch.search_args(name))
        same = resumed.returncode == 0 and scratch.outputs(name) == reference
        where = next((line for line in stderr.splitlines() if "stopped by SIGTERM" in line), stderr[-300:])
        score.add(f"preemption {i} ({where.split('SIGTERM ')[-1].split(';')[0]})", stopped and same,
                  f"exit {proc.returncode} then {resumed.returncode}: {where!r}")
    runs = [(run, status) for run, status in scratch.runs() if run not in before]
    score.add("one MLflow run per search", [s for _, s in runs] == ["FINISHED"] * (n + finished_early), f"runs: {runs}")
    check_transfer_preemptions(scratch, rng, transfers, score)
    return score


# Augmentation, drop path and two loader workers: what a resumed epoch must replay exactly.
TRANSFER_ARGS = (
    "--genotype", "ISDARTS", "--epochs", "3", "--warmup-epochs", "1", "--C", "4", "--layers", "3",
    "--batch-size", "16", "--image-size", "32", "--flops-size", "32", "--auxiliary-weight", "0",
    "--drop-path-prob", "0.2", "--workers", "2", "--augment", "true", "--bn", "local", "--device", "cpu",
    "--checkpoint-every-minutes", "0",
)


def check_transfer_preemptions(scratch: Scratch, rng: random.Random, n: int, score: Score) -> None:
    """`n` ImageNet transfers (`python -m isdarts.train.imagenet` on a tiny ImageFolder of subset images)
    sent SIGTERM at a drawn moment after their first checkpoint: each stops with exit 143 and the re-run's history
    equals an uninterrupted transfer's."""
    from isdarts.data.cifar import load_prepared
    from isdarts.data.imagefolder import make_tiny_imagefolder

    tree = scratch.dir / "imagenet-tiny"
    if not tree.exists():
        arrays, _ = load_prepared(scratch.dir / "data" / "prepared")
        make_tiny_imagefolder(tree, arrays.train_x, arrays.train_y, arrays.classes, 20, split="train")
        make_tiny_imagefolder(tree, arrays.test_x, arrays.test_y, arrays.classes, 2, split="val")

    def transfer(name: str) -> list[str]:
        out = f"transfer/{name}"
        return [sys.executable, "-m", "isdarts.train.imagenet", "--root", str(tree), "--out", out, *TRANSFER_ARGS]

    def history(name: str) -> Any:
        path = scratch.dir / "transfer" / name / "history.json"
        return _without_timing(json.loads(path.read_text())) if path.is_file() else None

    subprocess.run(transfer("reference"), cwd=scratch.dir, env=scratch.env, capture_output=True, timeout=RUN_TIMEOUT_S)
    reference = history("reference")
    assert reference is not None, "the uninterrupted transfer failed"
    raw = json.loads((scratch.dir / "transfer" / "reference" / "history.json").read_text())["epochs"]
    epoch_s = sum(r["epoch_seconds"] for r in raw) / len(raw)
    for i in range(n):
        name = f"transfer{i}"
        proc = subprocess.Popen(transfer(name), cwd=scratch.dir, env=scratch.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        checkpoint = scratch.dir / "transfer" / name / "imagenet_last.pt"
        while not checkpoint.exists() and proc.poll() is None:  # after epoch 1: the handler is in place
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 1.5) * epoch_s)  # inside epoch 2 or 3, or between them
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
        if proc.returncode == 0:
            score.add(f"transfer preemption {i}", False, "the transfer ended before the signal")
            continue
        stopped = proc.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in stderr
        resumed = subprocess.run(transfer(name), cwd=scratch.dir, env=scratch.env, capture_output=True,
                                 timeout=RUN_TIMEOUT_S)
        same = resumed.returncode == 0 and history(name) == reference
        where = next((line for line in stderr.splitlines() if "stopped by SIGTERM" in line), stderr[-300:])
        score.add(f"transfer preemption {i} ({where.split('SIGTERM ')[-1].split(';')[0]})", stopped and same,
                  f"exit {proc.returncode} then {resumed.returncode}: {where!r}")


# -- tracking outages ------------------------------------------------------------------------------------


def _store_runs(db: Path) -> list[tuple[str, str, int]]:
    """(run id, status, number of train_loss values) of every run in a sqlite store."""
    with sqlite3.connect(db) as con:
        return con.execute(
            "select r.run_uuid, r.status, (select count(*) from metrics m where m.run_uuid = r.run_uuid "
            "and m.key = 'train_loss') from runs r"
        ).fetchall()


def check_outages(scratch: Scratch) -> Score:
    """A search whose MLflow store is unreachable from the start, or becomes read-only mid-run, still finishes
    with its outputs; what MLflow missed is kept beside them, and `isdarts tracking-sync` sends it later."""
    score = Score("outages survived")
    epochs = scratch.raw["nb201"]["search"]["epochs"]

    # Unreachable from the start: a file where the store's folder should be.
    blocked = scratch.dir / "no-store-here"
    blocked.write_text("a file where the store's folder should be")
    env = {**scratch.env, "MLFLOW_TRACKING_URI": f"sqlite:///{blocked}/sub/mlflow.db"}
    result = scratch.run(*scratch.search_args("offline"), env=env)
    backlog = scratch.dir / "out" / "offline" / "mlflow_backlog.json"
    ok = result.returncode == 0 and scratch.outputs("offline") is not None and backlog.is_file()
    later = scratch.dir / "later.db"
    synced = ok and scratch.run("tracking-sync", str(backlog), "--tracking-uri", f"sqlite:///{later}").returncode == 0
    one_run = synced and [r[1:] for r in _store_runs(later)] == [("FINISHED", epochs)]
    score.add("store unreachable from the start", one_run,
              f"exit {result.returncode}, backlog {backlog.is_file()}, stderr: {result.stderr[-300:]!r}")

    # Read-only mid-run: the database is moved away (a folder put in its place) after the first checkpoint.
    db = scratch.dir / "midrun.db"
    env = {**scratch.env, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    proc = scratch.start(*scratch.search_args("midrun"), env=env)
    checkpoint = scratch.dir / "ckpt" / "midrun" / "last.pt"
    while not checkpoint.exists() and proc.poll() is None:
        time.sleep(0.01)
    moved = db.with_name("midrun-moved.db")
    db.rename(moved)
    db.mkdir()
    proc.wait(timeout=RUN_TIMEOUT_S)
    backlog = scratch.dir / "out" / "midrun" / "mlflow_backlog.json"
    ok = proc.returncode == 0 and scratch.outputs("midrun") is not None and backlog.is_file()
    db.rmdir()
    moved.rename(db)
    synced = ok and scratch.run("tracking-sync", str(backlog)).returncode == 0
    score.add("store read-only mid-run", synced and [r[1:] for r in _store_runs(db)] == [("FINISHED", epochs)],
              f"exit {proc.returncode}, backlog {backlog.is_file()}")
    return score


# -- the suite -------------------------------------------------------------------------------------------

KINDS = ("params", "corrupt", "kills", "preemptions", "zombies", "outages")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen kinds of fault, print a score line for each and the failures; 0 when all are perfect."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill points (default: drawn, printed)")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--preemptions", type=int, default=5)
    parser.add_argument("--only", default=",".join(KINDS), help="comma-separated kinds: " + ", ".join(KINDS))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--verbose", action="store_true", help="list every case (not the params ones)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    kinds = set(args.only.split(","))
    print(f"fault suite, seed {seed}", flush=True)
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="isdarts-faults-"))
    scores: list[Score | Count] = []
    try:
        if "params" in kinds:
            scores.append(check_bad_params([ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))]))
            print(scores[-1].line(), flush=True)
        scratch = Scratch(base)
        prepared = scratch.run("prepare-data")
        if prepared.returncode != 0:
            raise SystemExit(f"prepare-data failed in the scratch project: {prepared.stderr[-500:]}")
        for kind, check in (
            ("corrupt", lambda: [check_corrupt_inputs(scratch)]),
            ("kills", lambda: list(check_kills(scratch, rng, args.kills))),
            ("preemptions", lambda: [check_preemptions(scratch, rng, args.preemptions)]),
            ("zombies", lambda: [check_zombies(scratch)]),
            ("outages", lambda: [check_outages(scratch)]),
        ):
            if kind in kinds:
                for score in check():
                    scores.append(score)
                    print(score.line(), flush=True)
    finally:
        if args.keep:
            print(f"scratch kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    for score in scores:
        if args.verbose and score.label != "bad params refused":
            print("\n".join(f"  {case}" for case in getattr(score, "cases", [])))
        for failure in score.failures:
            print(f"  FAILED {score.label}: {failure}")
    return 0 if all(s.perfect for s in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
