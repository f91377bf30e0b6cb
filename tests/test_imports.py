"""The package's import graph, built statically from the sources: no cycles, and no hidden imports.

An import inside a function hides a dependency from a reader and from this graph's users alike, so it is
allowed only with a comment (same line or the line above) saying why, e.g. to keep mlflow or dvc out of
the modules the GPU machine imports.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "isdarts"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The isdarts module an import of `name` loads (a submodule if one exists, else its package)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path: Path, module: str, known: dict[str, Path]) -> list[tuple[str, ast.stmt]]:
    """Every isdarts module that `path` imports (top level or not), with the statement that does it."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] if base.startswith("isdarts") else [base]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "isdarts" and (target := resolve(name, known)) and target != module:
                found.append((target, node))
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: {t for t, _ in imports_of(p, m, known)} for m, p in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None; iterative DFS with colours."""
    colour: dict[str, int] = {}
    for root in sorted(edges):
        if colour.get(root):
            continue
        stack = [(root, iter(sorted(edges[root])))]
        path = [root]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not colour.get(child):
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(edges.get(child, ())))))
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_isdarts_has_no_import_cycle():
    edges = graph()
    assert len(edges) > 40, "the graph should cover the whole package"
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def function_level_imports(path: Path) -> list[ast.stmt]:
    tree = ast.parse(path.read_text())
    top = set()
    for node in tree.body:  # module level, including `if TYPE_CHECKING:` and `try: ... except ImportError:`
        top.add(id(node))
        if isinstance(node, ast.If | ast.Try):
            top |= {id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in top]


def explained(lines: list[str], index: int) -> bool:
    """A comment on the import's line, or above it or above the run of imports it belongs to."""
    while index >= 0:
        line = lines[index].strip()
        if "#" in line:
            return True
        if not line.startswith(("import ", "from ")) and line:
            return False
        index -= 1
    return False


def test_imports_inside_functions_say_why():
    unexplained = []
    for module, path in sorted(modules().items()):
        lines = path.read_text().splitlines()
        for node in function_level_imports(path):
            if not explained(lines, node.lineno - 1):
                unexplained.append(f"{module}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not unexplained, "imports inside functions need a comment saying why:\n" + "\n".join(unexplained)


# The package's layers, lowest first: a module may import modules of its own package (a name below) and of
# strictly lower layers only, so e.g. config (which validates params.yaml) never pulls in torch-side code. The
# README's "Layout" gives the same table.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("isdarts", "isdarts.errors"),  # "isdarts": the package's own __init__.py
    ("isdarts.io", "isdarts.registry"),
    ("isdarts.records", "isdarts.tracking_backlog"),  # records checks a run's method against the registry
    ("isdarts.config", "isdarts.tracking"),
    ("isdarts.data", "isdarts.spaces"),
    ("isdarts.benchmark",),
    ("isdarts.train",),
    ("isdarts.search", "isdarts.report"),
    ("isdarts.pipeline", "isdarts.cluster", "isdarts.tracking_server"),
    ("isdarts.cli",),
)


def layer_unit(module: str) -> tuple[int, str] | None:
    """The layer of `module` and the package (a LAYERS name) it belongs to; None if no layer names it."""
    units = {name: level for level, names in enumerate(LAYERS) for name in names}
    found = [name for name in units if module == name or (name != "isdarts" and module.startswith(name + "."))]
    if not found:
        return None
    unit = max(found, key=len)
    return units[unit], unit


def layer_violations() -> list[str]:
    """Every import that goes sideways or up the layers, as "module -> module (file:line)"; unlayered modules too."""
    known, problems = modules(), []
    for module, path in sorted(known.items()):
        here = layer_unit(module)
        if here is None:
            problems.append(f"{module}: in no layer of LAYERS")
            continue
        for target, node in sorted(imports_of(path, module, known), key=lambda t: t[1].lineno):
            there = layer_unit(target)
            if there is not None and there[1] != here[1] and there[0] >= here[0]:
                problems.append(f"{module} (layer {here[0]}) -> {target} (layer {there[0]}) "
                                f"({path.relative_to(PACKAGE.parent)}:{node.lineno})")
    return problems


def test_layer_unit_picks_the_longest_package():
    assert layer_unit("isdarts") == (0, "isdarts")
    assert layer_unit("isdarts.config.paper") == (3, "isdarts.config")
    assert layer_unit("isdarts.records") == (2, "isdarts.records")
    assert layer_unit("isdarts.cli") == (len(LAYERS) - 1, "isdarts.cli")
    assert layer_unit("isdarts.nowhere") is None


def test_imports_go_down_the_layers():
    problems = layer_violations()
    assert not problems, "imports against the layers (README, Layout):\n" + "\n".join(problems)


def test_readme_gives_these_layers():
    rows = re.findall(r"^\| (\d+) \| (.+?) \| .*\|$", (PACKAGE.parent / "README.md").read_text(encoding="utf-8"), re.M)
    readme = [tuple("isdarts" if name == "isdarts" else f"isdarts.{name}" for name in re.findall(r"`(\w+)`", names))
              for _, names in rows]
    assert [int(level) for level, _ in rows] == list(range(len(LAYERS)))
    assert readme == [tuple(names) for names in LAYERS], "README's layer table differs from LAYERS"


def test_loading_params_does_not_import_torch():
    # Config validates params.yaml in every DVC stage and CLI command: it must stay off torch's import cost.
    code = "import isdarts.config, sys; isdarts.config.load_params('params.yaml'); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", "loading params imported torch"
