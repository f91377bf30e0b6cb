"""params.yaml's `cluster:` section: the SLURM resources each kind of pipeline stage asks for.

`isdarts cluster submit` turns every out-of-date stage into one SLURM job; the job's sbatch options come from
`cluster.defaults` overlaid with `cluster.stages.<kind>`, where a kind is a stage name of dvc.yaml without its
matrix item (`search_nb201` for `search_nb201@isdarts-0`). Values are checked here, before anything is
submitted, so a typo fails in a second rather than after a day in the queue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

from isdarts.config.fields import fail, no_unknown, read_int, required
from isdarts.errors import ConfigError

# The stage names of dvc.yaml (tests/test_cluster.py checks this list against the file).
STAGE_KINDS = (
    "prepare_data", "prepare_robust_data", "search_nb201", "lookup_nb201", "search_darts", "retrain_darts",
    "search_robust", "retrain_robust", "search_robust_data", "retrain_robust_data", "imagenet_data",
    "transfer_imagenet", "sweep_search", "sweep_retrain", "report",
)
# Stages whose command is a DDP training that torchrun can spread over several processes and nodes.
DISTRIBUTED_KINDS = ("transfer_imagenet",)

# sbatch's own formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS; memory with an optional unit.
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_MEMORY = re.compile(r"^\d+[KMGT]?$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class JobResources:
    """What one stage's job asks SLURM for (None: the cluster's default, no option passed)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    processes_per_node: int = 1  # torchrun's --nproc_per_node for DISTRIBUTED_KINDS; 1 elsewhere
    cpus: int = 2  # per process
    mem: str = "8G"  # per node
    time: str = "04:00:00"
    extra: tuple[str, ...] = ()  # further `#SBATCH` lines, verbatim (e.g. --constraint=a100)

    def sbatch_options(self) -> list[str]:
        # One task per node (srun starts one torchrun there, which starts the node's processes).
        opts = [f"--nodes={self.nodes}", "--ntasks-per-node=1",
                f"--cpus-per-task={self.cpus * self.processes_per_node}", f"--mem={self.mem}", f"--time={self.time}"]
        if self.gpus_per_node:
            opts.append(f"--gpus-per-node={self.gpus_per_node}")
        opts += [f"--{key}={value}" for key in ("partition", "account", "qos") if (value := getattr(self, key))]
        return opts + list(self.extra)


@dataclass(frozen=True)
class ClusterParams:
    defaults: JobResources
    stages: dict[str, JobResources]
    # SLURM sends SIGTERM this long before the time limit; the stage checkpoints at its current step, exits,
    # and the job requeues itself (ALGORITHMS/README: what survives preemption).
    signal_before_limit_s: int = 300
    rendezvous_port: int = 29500  # torchrun's c10d rendezvous on a multi-node job's first node

    def resources(self, kind: str) -> JobResources:
        return self.stages.get(kind, self.defaults)


DEFAULT_CLUSTER = ClusterParams(defaults=JobResources(), stages={})

_RESOURCE_KEYS = {f.name for f in fields(JobResources)}


def _optional_name(d: dict, key: str, prefix: str) -> str | None:
    value = d[key]
    if value is None:
        return None
    if not isinstance(value, str) or not _NAME.match(value):
        raise fail(prefix + key, value, "a SLURM name (letters, digits, _ . -) or null")
    return value


def _resources(d: Any, prefix: str, base: JobResources) -> JobResources:
    if not isinstance(d, dict):
        raise ConfigError(f"params.yaml: {prefix.rstrip('.')} must be a mapping of sbatch resources, got {d!r}")
    no_unknown(d, prefix, _RESOURCE_KEYS)
    values: dict[str, Any] = {}
    for key in d:
        if key in ("partition", "account", "qos"):
            values[key] = _optional_name(d, key, prefix)
        elif key in ("nodes", "processes_per_node", "cpus"):
            values[key] = read_int(d, key, prefix, minimum=1)
        elif key == "gpus_per_node":
            values[key] = read_int(d, key, prefix, minimum=0)
        elif key == "mem":
            if not isinstance(d[key], str) or not _MEMORY.match(d[key]):
                raise fail(prefix + key, d[key], "memory per node as sbatch takes it, e.g. 16G or 64000M")
            values[key] = d[key]
        elif key == "time":
            if not isinstance(d[key], str) or not _TIME.match(d[key]):
                raise fail(prefix + key, d[key], "a time limit as sbatch takes it: HH:MM:SS or D-HH:MM:SS (quoted)")
            values[key] = d[key]
        elif key == "extra":
            extra = d[key]
            if not isinstance(extra, list) or not all(isinstance(x, str) and x.startswith("--") for x in extra):
                raise fail(prefix + key, extra, "a list of sbatch options, each starting with --")
            values[key] = tuple(extra)
    return replace(base, **values)


def read_cluster(raw: Any) -> ClusterParams:
    """The validated `cluster:` section of params.yaml (call it only where the file has one)."""
    p = "cluster."
    if not isinstance(raw, dict):
        raise ConfigError(f"params.yaml: cluster must be a mapping (defaults, stages, ...), got {raw!r}")
    no_unknown(raw, p, {"defaults", "stages", "signal_before_limit_s", "rendezvous_port"})
    defaults = _resources(required(raw, "defaults", p), p + "defaults.", JobResources())
    stages_raw = raw.get("stages", {})
    if not isinstance(stages_raw, dict):
        raise ConfigError(f"params.yaml: cluster.stages must be a mapping of stage kind to resources (or {{}}), "
                          f"got {stages_raw!r}")
    no_unknown(stages_raw, p + "stages.", set(STAGE_KINDS))
    stages = {kind: _resources(value, f"{p}stages.{kind}.", defaults) for kind, value in stages_raw.items()}
    for kind, res in stages.items():
        if (res.nodes > 1 or res.processes_per_node > 1) and kind not in DISTRIBUTED_KINDS:
            raise ConfigError(
                f"params.yaml: cluster.stages.{kind}: nodes {res.nodes}, processes_per_node "
                f"{res.processes_per_node}; only {', '.join(DISTRIBUTED_KINDS)} trains on several processes "
                "(set both to 1)"
            )
    signal_s = read_int({"signal_before_limit_s": 300, **raw}, "signal_before_limit_s", p, minimum=1)
    port = read_int({"rendezvous_port": 29500, **raw}, "rendezvous_port", p, minimum=1)
    if port > 65535:
        raise fail(p + "rendezvous_port", port, "a TCP port (1-65535)")
    return ClusterParams(defaults, stages, signal_s, port)
