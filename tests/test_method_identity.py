"""One source for a method's identity: a method's name is written, as a string, only in the registry and in the
module that implements it. Config, records, the report and the CLI read names and labels from isdarts.registry;
data files (the paper's numbers) may name methods, Python modules may not.
"""

from __future__ import annotations

import ast
from pathlib import Path

from isdarts.registry import METHODS

PACKAGE = Path(__file__).resolve().parents[1] / "isdarts"
REGISTRY = PACKAGE / "registry.py"


def module_path(module: str) -> Path:
    return PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")


def literals(path: Path) -> list[tuple[str, int]]:
    """Every string constant of a Python file, with its line."""
    return [(node.value, node.lineno) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_every_method_module_exists():
    missing = [f"{name}: {spec.module}" for name, spec in METHODS.items() if not module_path(spec.module).is_file()]
    assert not missing, "method rows name modules that do not exist:\n" + "\n".join(missing)


def test_a_method_is_named_only_in_the_registry_and_its_own_module():
    owners = {name: {REGISTRY, module_path(spec.module)} for name, spec in METHODS.items()}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for value, line in literals(path):
            if value in owners and path not in owners[value]:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {value!r}")
    assert not offenders, ("method names written outside isdarts/registry.py and the method's own module (read "
                           "them from isdarts.registry):\n" + "\n".join(offenders))
