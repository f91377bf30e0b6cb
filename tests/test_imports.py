"""The package's import graph, built statically from the sources: no cycles, and no hidden imports.

An import inside a function hides a dependency from a reader and from this graph's users alike, so it is
allowed only with a comment (same line or the line above) saying why, e.g. to keep mlflow or dvc out of
the modules the GPU machine imports.
"""

from __future__ import annotations

import ast
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
