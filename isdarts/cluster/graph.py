"""The pipeline as DVC sees it: every stage instance of dvc.yaml, its command, the stages it reads from, and
which of them are out of date, all through DVC's own Python API (so matrix expansion, params and the lock
file mean exactly what they mean to `dvc repro`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dvc.repo import Repo

from isdarts.errors import ConfigError


@dataclass(frozen=True)
class Stage:
    name: str  # DVC's address of the instance, e.g. search_nb201@isdarts-0
    cmd: str
    upstream: tuple[str, ...]  # the stages whose outputs it reads

    @property
    def kind(self) -> str:
        """The stage's name in dvc.yaml (what params.yaml's cluster.stages is keyed by)."""
        return self.name.split("@", 1)[0]


def load_stages(root: Path) -> list[Stage]:
    """Every pipeline stage of the repository at `root`, each after all the stages it reads from."""
    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        stages = {}
        for node in graph.nodes:
            if not node.cmd:  # a .dvc file (imported or added data), not a command to run
                continue
            cmd = node.cmd if isinstance(node.cmd, str) else " && ".join(node.cmd)
            upstream = tuple(sorted(d.addressing for d in graph.successors(node) if d.cmd))
            stages[node.addressing] = Stage(node.addressing, cmd, upstream)
    return _upstream_first(stages)


def _upstream_first(stages: dict[str, Stage]) -> list[Stage]:
    ordered: list[Stage] = []
    placed: set[str] = set()
    pending = sorted(stages)
    while pending:
        ready = [name for name in pending if set(stages[name].upstream) <= placed]
        if not ready:
            raise ConfigError(f"dvc.yaml: the stages {', '.join(pending)} depend on each other in a cycle")
        ordered += [stages[name] for name in ready]
        placed.update(ready)
        pending = [name for name in pending if name not in placed]
    return ordered


def changed_stages(root: Path) -> set[str]:
    """The stages `dvc status` reports: changed deps, params or command, or missing outputs."""
    with Repo(str(root)) as repo:
        return set(repo.status())


def matches(stage: Stage, targets: Iterable[str]) -> bool:
    """`search_nb201` names all its matrix instances, `search_nb201@isdarts-0` one (as `dvc repro` reads them)."""
    return any(t in (stage.name, stage.kind) for t in targets)


def stages_to_run(stages: Sequence[Stage], changed: set[str], targets: Sequence[str] = ()) -> list[Stage]:
    """What `dvc repro [TARGET ...]` would run: the changed stages and everything downstream of them, within
    the targets and their upstream stages when targets are given; upstream first."""
    by_name = {s.name: s for s in stages}
    if targets:
        unknown = [t for t in targets if not any(matches(s, [t]) for s in stages)]
        if unknown:
            raise ConfigError(
                f"no stage named {', '.join(unknown)} in dvc.yaml; stages: "
                + ", ".join(sorted({s.kind for s in stages}))
            )
        scope = {s.name for s in stages if matches(s, targets)}
        frontier = list(scope)
        while frontier:
            for up in by_name[frontier.pop()].upstream:
                if up not in scope:
                    scope.add(up)
                    frontier.append(up)
    else:
        scope = set(by_name)
    selected: set[str] = set()
    for stage in stages:  # upstream first, so a stage sees whether anything it reads will run
        if stage.name in scope and (stage.name in changed or selected.intersection(stage.upstream)):
            selected.add(stage.name)
    return [s for s in stages if s.name in selected]
