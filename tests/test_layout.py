"""The house's floors hold: envs <- agents <- credit <- learners. No module imports one on
a floor above its own, and no modules import each other in a circle (read from the
source, imports inside functions included)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"envs": 0, "agents": 1, "credit": 2, "learners": 3}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports() -> dict[str, set[str]]:
    """Each project module -> the project modules it imports (``from a import b`` counts
    ``a.b`` where ``b`` is a module)."""
    modules = {_module(p): p for floor in FLOORS for p in (ROOT / floor).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_module_imports_a_floor_above_its_own():
    up = [
        (module, dep)
        for module, deps in _imports().items()
        for dep in deps
        if FLOORS[dep.split(".")[0]] > FLOORS[module.split(".")[0]]
    ]
    assert up == []


def test_no_import_circle():
    """Packages' ``__init__`` re-exports aside (a package imports its own modules)."""
    graph = {
        m: {d for d in deps if not d.startswith(m + ".") and not m.startswith(d + ".")}
        for m, deps in _imports().items()
    }
    circles = []

    def walk(module: str, path: list[str], done: set[str]) -> None:
        for dep in sorted(graph[module]):
            if dep in path:
                circles.append(path[path.index(dep) :] + [dep])
            elif dep not in done:
                walk(dep, path + [dep], done)
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            walk(module, [module], done)
    assert circles == []
