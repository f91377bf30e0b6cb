"""`isdarts cluster submit | status | collect`: the pipeline as SLURM jobs, recorded back into DVC.

submit   every out-of-date stage (or those under TARGET) becomes one job, with `afterok` dependencies that
         mirror dvc.yaml's graph; stages already queued or running from an earlier submit are not submitted
         again (their jobs become the dependencies instead).
status   each submitted stage's job, its state and its log.
collect  `dvc commit` of the stages whose jobs finished, so that dvc.lock and `dvc status` agree with what ran;
         a failed stage is named with its log and left out.

Everything a job needs lives in the shared checkout: the scripts, logs and status files under logs/cluster/,
which is also where `status` and `collect` read the submissions from.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from isdarts.cluster import graph, slurm
from isdarts.config.params import load_params
from isdarts.errors import ConfigError

LEDGER_DIR = Path("logs") / "cluster"
LEDGER = "jobs.json"


@dataclass(frozen=True)
class StageState:
    stage: str
    job_id: str
    state: str  # PENDING/RUNNING/... while queued; COMPLETED, FAILED (exit N), or LOST once gone
    log: Path
    exit_code: int | None


def _safe(stage: str) -> str:
    return stage.replace("/", "_")


def _ledger(root: Path) -> dict[str, dict]:
    path = root / LEDGER_DIR / LEDGER
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_ledger(root: Path, ledger: dict[str, dict]) -> None:
    path = root / LEDGER_DIR / LEDGER
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ledger, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def submit(
    root: Path, targets: Sequence[str] = (), params_file: str = "params.yaml", dry_run: bool = False
) -> list[str]:
    """Submit the out-of-date stages; returns the lines to print (one per stage)."""
    root = root.resolve()
    cluster = load_params(root / params_file).cluster
    slurm.require_slurm()
    # Stages whose jobs finished since the last collect go into dvc.lock first: otherwise DVC still sees them
    # out of date and they would run twice.
    recorded = _record_finished(root)
    stages = graph.load_stages(root)
    to_run = graph.stages_to_run(stages, graph.changed_stages(root), targets)
    # Read after DVC's verdict, since a job may have ended meanwhile: a job writes its status file before it
    # leaves the queue, so each stage is either still queued or, if it finished, known to have.
    queued = slurm.queued_jobs(root)
    ledger_dir = root / LEDGER_DIR
    ledger_dir.mkdir(parents=True, exist_ok=True)
    ledger = _ledger(root)
    finished = {s.stage: s.job_id for s in _unrecorded_completions(stage_states(root), ledger)}
    job_of = {name: job.job_id for name, job in queued.items()}
    lines = [f"recorded in dvc.lock (finished since the last collect): {', '.join(recorded)}"] if recorded else []
    if not to_run:
        return [*lines, "every stage is up to date (dvc status): nothing to submit"]
    for stage in to_run:
        if stage.name in queued:
            job = queued[stage.name]
            lines.append(f"{stage.name}: already {job.state.lower()} as job {job.job_id}, not submitted again")
            continue
        if stage.name in finished:  # its outputs are there; `collect` records them
            lines.append(f"{stage.name}: already finished as job {finished[stage.name]}, not submitted again")
            continue
        after = [job_of[up] for up in stage.upstream if up in job_of]
        res = cluster.resources(stage.kind)
        log = ledger_dir / f"{_safe(stage.name)}.log"
        status = ledger_dir / f"{_safe(stage.name)}.status.json"
        script = ledger_dir / f"{_safe(stage.name)}.sbatch"
        script.write_text(slurm.batch_script(stage, res, cluster, root, log, status))
        if dry_run:
            job_of[stage.name] = f"<{stage.name}>"
            lines.append(f"{stage.name}: would submit {script.relative_to(root)} after {after or 'nothing'}")
            continue
        job_id = slurm.submit(script, after)
        job_of[stage.name] = job_id
        ledger[stage.name] = {"job_id": job_id, "log": str(log.relative_to(root)), "after": after}
        _write_ledger(root, ledger)
        lines.append(f"{stage.name}: job {job_id}" + (f" (after {', '.join(after)})" if after else ""))
    return lines


def stage_states(root: Path) -> list[StageState]:
    """Each submitted stage's latest job and where it stands."""
    root = root.resolve()
    queued = slurm.queued_jobs(root)
    states = []
    for stage, entry in sorted(_ledger(root).items()):
        log = root / entry["log"]
        status = slurm.read_status(root / LEDGER_DIR / f"{_safe(stage)}.status.json")
        job = queued.get(stage)
        if job is not None and job.job_id == entry["job_id"]:
            state = job.state + (f" ({job.reason})" if job.reason not in ("None", "") else "")
            states.append(StageState(stage, job.job_id, state, log, None))
        elif status is not None and str(status.get("job_id")) == entry["job_id"]:
            code = int(status["exit_code"])
            states.append(StageState(stage, entry["job_id"], "COMPLETED" if code == 0 else f"FAILED (exit {code})",
                                     log, code))
        else:  # gone from the queue without an ending: cancelled, killed, or its upstream job failed
            states.append(StageState(stage, entry["job_id"], "LOST (cancelled, killed or an upstream job failed)",
                                     log, None))
    return states


def _dvc() -> str:
    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.exists() else (shutil.which("dvc") or "dvc")


def _unrecorded_completions(states: list[StageState], ledger: dict[str, dict]) -> list[StageState]:
    """The stages whose latest job completed and that `collect` has not put into dvc.lock yet."""
    return [s for s in states if s.state == "COMPLETED" and not ledger[s.stage].get("recorded")]


def _record_finished(root: Path, states: list[StageState] | None = None) -> list[str]:
    """`dvc commit` the stages whose jobs completed and that are not recorded yet; their names."""
    ledger = _ledger(root)
    states = stage_states(root) if states is None else states
    done = [s.stage for s in _unrecorded_completions(states, ledger)]
    if not done:
        return []
    result = subprocess.run([_dvc(), "commit", "--force", *done], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"dvc commit {' '.join(done)} failed: {result.stderr.strip() or result.stdout.strip()}")
    for stage in done:
        ledger[stage]["recorded"] = True
    _write_ledger(root, ledger)
    return done


def collect(root: Path) -> tuple[list[str], bool]:
    """`dvc commit` every stage whose job completed; (lines to print, whether every submitted stage did)."""
    root = root.resolve()
    states = stage_states(root)
    if not states:
        return ["nothing was submitted from this checkout (no logs/cluster/jobs.json)"], False
    waiting = [s for s in states if s.exit_code is None and not s.state.startswith("LOST")]
    failed = [s for s in states if s.state.startswith(("FAILED", "LOST"))]
    done = _record_finished(root, states)
    lines = [f"recorded in dvc.lock: {', '.join(done)}"] if done else []
    lines += [f"still {s.state.lower()}: {s.stage} (job {s.job_id})" for s in waiting]
    lines += [f"{s.state}: {s.stage} (job {s.job_id}), not recorded; its log: {s.log}" for s in failed]
    return lines, not waiting and not failed


def check_root(root: Path) -> Path:
    if not (root / "dvc.yaml").is_file():
        raise ConfigError(f"{root}: no dvc.yaml here; run `isdarts cluster` from the repository root (or --root)")
    return root


def wait(root: Path, poll_s: float = 5.0, timeout_s: float | None = None) -> None:
    """Return once no submitted stage's job is pending or running (or raise after `timeout_s`)."""
    start = time.monotonic()
    while any(s.exit_code is None and not s.state.startswith("LOST") for s in stage_states(root)):
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"cluster jobs still queued after {timeout_s:.0f} s (isdarts cluster status)")
        time.sleep(poll_s)
