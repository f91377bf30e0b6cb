"""SLURM, through its own commands (sbatch, squeue, scontrol): one batch script per pipeline stage.

The script runs the stage's command from dvc.yaml as a job step (`srun`), so that SLURM's signals reach the
stage itself exactly once: the time-limit warning (`--signal=TERM@N`), `scancel --signal=TERM`, and a
preemption. The stage then writes its step-exact checkpoint and exits 143; the script requeues the job, and
the requeued job runs the same command, which resumes from that checkpoint into the same MLflow run. Any
other ending is written to the stage's status file, which `isdarts cluster status/collect` read (SLURM
forgets finished jobs after a while, and a site may have no accounting database).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from isdarts.cluster.graph import Stage
from isdarts.config.cluster import DISTRIBUTED_KINDS, ClusterParams, JobResources
from isdarts.errors import ConfigError

JOB_PREFIX = "isdarts:"  # job names are isdarts:<stage>, which squeue shows and status matches on
PREEMPTED_EXITS = (143, 130)  # a stage stopped by SIGTERM/SIGINT after writing its checkpoint (README)
COMMAND_TIMEOUT_S = 120


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    state: str  # PENDING, RUNNING, ... as squeue prints it
    reason: str


def require_slurm() -> None:
    missing = [c for c in ("sbatch", "squeue", "scontrol") if shutil.which(c) is None]
    if missing:
        raise ConfigError(
            f"SLURM's {', '.join(missing)} not found on PATH: run `isdarts cluster` on a SLURM login node "
            "(or install slurm-wlm; README, 'Running on a cluster')"
        )


def _slurm(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`{shlex.join(args)}` did not answer in {COMMAND_TIMEOUT_S} s: is slurmctld up?") from None
    if done.returncode != 0:
        raise RuntimeError(f"`{shlex.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def stage_command(stage: Stage, res: JobResources, cluster: ClusterParams) -> str:
    """The job step that runs the stage: srun over the stage's command, or, for a DDP training on several
    processes, srun starting one torchrun per node with the rendezvous on the job's first node."""
    if stage.kind in DISTRIBUTED_KINDS and res.nodes * res.processes_per_node > 1:
        parts = shlex.split(stage.cmd)
        if parts[0] not in ("python", "python3"):
            raise ConfigError(f"stage {stage.name}: cannot start `{stage.cmd}` under torchrun (not `python ...`)")
        torchrun = (
            f"torchrun --nnodes={res.nodes} --nproc_per_node={res.processes_per_node} --rdzv_backend=c10d "
            f'--rdzv_id="$SLURM_JOB_ID" --rdzv_endpoint="$head:{cluster.rendezvous_port}" {shlex.join(parts[1:])}'
        )
        return (
            'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)\n'
            f'srun --ntasks-per-node=1 --cpus-per-task="$SLURM_CPUS_PER_TASK" {torchrun}'
        )
    return f'srun --ntasks=1 --cpus-per-task="$SLURM_CPUS_PER_TASK" {stage.cmd}'


def batch_script(stage: Stage, res: JobResources, cluster: ClusterParams, root: Path, log: Path,
                 status: Path) -> str:
    options = [
        f"--job-name={JOB_PREFIX}{stage.name}", f"--chdir={root}", f"--output={log}", "--open-mode=append",
        "--requeue", f"--signal=TERM@{cluster.signal_before_limit_s}", "--kill-on-invalid-dep=yes",
        *res.sbatch_options(),
    ]
    header = "\n".join(f"#SBATCH {opt}" for opt in options)
    return f"""#!/bin/bash
{header}
# Written by `isdarts cluster submit` for the DVC stage {stage.name}; it runs that stage's command from dvc.yaml.
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS="${{OMP_NUM_THREADS:-$SLURM_CPUS_PER_TASK}}"
echo "== isdarts cluster: stage {stage.name}, job $SLURM_JOB_ID, restart ${{SLURM_RESTART_COUNT:-0}}," \
  "$(hostname), $(date -Is)"
rm -f {shlex.quote(str(status))}
# The step gets SLURM's signals; this shell only waits for it (a trap, so a signal to it does not end it first).
trap 'echo "== isdarts cluster: signal received, waiting for the stage to checkpoint"' TERM INT
{stage_command(stage, res, cluster)}
rc=$?
if [ "$rc" -eq {PREEMPTED_EXITS[0]} ] || [ "$rc" -eq {PREEMPTED_EXITS[1]} ]; then
  echo "== isdarts cluster: stage stopped at a checkpoint (exit $rc); requeueing job $SLURM_JOB_ID to resume it"
  scontrol requeue "$SLURM_JOB_ID" && sleep 60
fi
printf '{{"stage": "%s", "job_id": "%s", "exit_code": %d, "finished": "%s"}}\\n' \\
  {shlex.quote(stage.name)} "$SLURM_JOB_ID" "$rc" "$(date -Is)" > {shlex.quote(str(status))}.tmp
mv {shlex.quote(str(status))}.tmp {shlex.quote(str(status))}
echo "== isdarts cluster: stage {stage.name} ended with exit $rc"
exit "$rc"
"""


def submit(script: Path, after: list[str]) -> str:
    """sbatch the script, to start once every job in `after` has succeeded; the new job's id."""
    args = ["sbatch", "--parsable"]
    if after:
        args.append("--dependency=afterok:" + ":".join(after))
    out = _slurm([*args, str(script)]).strip()
    return out.split(";", 1)[0]  # --parsable prints "id" or "id;cluster"


def queued_jobs(root: Path) -> dict[str, QueuedJob]:
    """This user's pending and running isdarts jobs of the checkout at `root`, by stage."""
    user = os.environ.get("USER") or _slurm(["id", "-un"]).strip()
    out = _slurm(["squeue", "--noheader", "--user", user, "--format=%i|%j|%T|%r|%Z"])
    jobs = {}
    for line in out.splitlines():
        job_id, name, state, reason, workdir = line.split("|", 4)
        if name.startswith(JOB_PREFIX) and Path(workdir).resolve() == root.resolve():
            stage = name[len(JOB_PREFIX):]
            jobs[stage] = QueuedJob(job_id, state, reason)
    return jobs


def read_status(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
