"""A one-node SLURM cluster on this machine (slurmctld + slurmd on localhost, munge), for tests and trials.

    python scripts/local_slurm.py start --dir /tmp/slurm      # prints the line to export (SLURM_CONF=...)
    python scripts/local_slurm.py stop --dir /tmp/slurm

Needs root and Debian's `slurm-wlm` and `munge` (`apt-get install slurm-wlm munge`). The cluster's files (its
slurm.conf, state, spool, logs) live under --dir; nothing of the system's SLURM configuration is touched.
The daemons listen on their own ports, so a site's SLURM on the same machine is not disturbed. The node
offers this machine's CPUs, scheduled one by one (CR_CPU), so two 1-CPU jobs run side by side on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

MUNGE_SOCKET_DIR = Path("/run/munge")
START_TIMEOUT_S = 60

CONF = """\
ClusterName=isdarts-local
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
# No cgroups in a container: track processes through /proc, bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
# Keep finished jobs visible to scontrol for an hour.
MinJobAge=3600
NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _memory_mb() -> int:
    """What the node offers jobs: this machine's memory less 1 GiB for the system."""
    total_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemTotal:"))
    return max(total_kb // 1024 - 1024, 512)


def _start_munge() -> None:
    """munged as the munge user (it refuses root), unless one already answers."""
    if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
        return
    MUNGE_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    for path in (MUNGE_SOCKET_DIR, Path("/var/log/munge"), Path("/var/lib/munge"), Path("/etc/munge")):
        if path.exists():
            shutil.chown(path, "munge", "munge")
            for child in path.rglob("*"):
                shutil.chown(child, "munge", "munge")
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run(["mungekey", "--create"], check=True, capture_output=True)
        shutil.chown(key, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True, capture_output=True)


def start(base: Path, cpus: int | None = None) -> dict[str, str]:
    """Start the cluster under `base`; the environment variables its clients need."""
    missing = [c for c in ("slurmctld", "slurmd", "sbatch", "munged") if shutil.which(c) is None
               and not Path("/usr/sbin", c).exists()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        raise SystemExit("a local SLURM cluster needs root (its daemons run as root here)")
    base = base.resolve()
    for sub in ("state", "spool"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    conf = base / "slurm.conf"
    conf.write_text(CONF.format(host=socket.gethostname().split(".")[0], dir=base, cpus=cpus or os.cpu_count(),
                                memory_mb=_memory_mb(),
                                ctld_port=_free_port(), slurmd_port=_free_port()))
    _start_munge()
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([daemon, "-f", str(conf)], env=env, check=True, capture_output=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        out = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=env, capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated"):
            return {"SLURM_CONF": str(conf)}
        time.sleep(0.5)
    logs = "\n".join((base / f).read_text()[-1500:] for f in ("slurmctld.log", "slurmd.log") if (base / f).exists())
    raise SystemExit(f"the local SLURM node did not come up in {START_TIMEOUT_S} s:\n{logs}")


def stop(base: Path) -> None:
    for daemon in ("slurmd", "slurmctld"):  # the node first, so the controller sees it go
        pid_file = base.resolve() / f"{daemon}.pid"
        if pid_file.is_file():
            try:
                os.kill(int(pid_file.read_text().strip()), 15)
            except (ProcessLookupError, ValueError):
                pass
    time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--dir", type=Path, required=True, help="the cluster's own folder")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs the node offers (default: this machine's)")
    args = parser.parse_args(argv)
    if args.action == "start":
        env = start(args.dir, args.cpus)
        print(f"export SLURM_CONF={env['SLURM_CONF']}")
    else:
        stop(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
