"""The package is layered: each stage imports only from the stages before it, and nothing imports in a cycle.

Every import counts, module-level and function-level alike (an ``ast`` walk over the source).
"""
from __future__ import annotations

import ast
from pathlib import Path

import labelwise

PACKAGE = Path(labelwise.__file__).parent
# Stage order: a module may import its own stage or an earlier one, never a later one.
LAYERS = ["core", "data", "models", "evaluation", "training", "infer", "report", "serve", "cli"]
CORE = {"errors", "labels", "io", "version", "registry", "config", "progress", "outputs", "malloc"}
MAX_LINES = 400


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package's front door (labelwise/__init__.py) may reach anything, lazily
    if parts[1] in CORE:
        return "core"
    if parts[1] == "__main__":
        return "cli"
    assert parts[1] in LAYERS, f"{module}: not in any stage; add its folder to LAYERS in {__file__}"
    return parts[1]


def _imports(path: Path) -> set[str]:
    """Every labelwise module this file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("labelwise")}
        elif isinstance(node, ast.ImportFrom):
            base = (here[: len(here) - node.level + 1] if node.level else [])
            mod = ".".join(base + ([node.module] if node.module else []))
            if mod.startswith("labelwise"):
                submodules = {f"{mod}.{a.name}" for a in node.names if _exists(f"{mod}.{a.name}")}
                found |= submodules
                if len(submodules) < len(node.names):  # names defined in mod itself
                    found.add(mod)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module(p): {m for m in _imports(p) if _exists(m) or m == "labelwise"} for p in PACKAGE.rglob("*.py")}


def test_no_import_goes_up_a_stage():
    wrong = []
    for module, deps in _graph().items():
        stage = _stage(module)
        if stage is None:
            continue
        for dep in deps:
            dep_stage = _stage(dep)
            if dep_stage is None:
                wrong.append(f"{module} imports the package root {dep} (import from the defining module)")
            elif LAYERS.index(dep_stage) > LAYERS.index(stage):
                wrong.append(f"{module} ({stage}) imports {dep} ({dep_stage})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle():
    graph = _graph()
    edges = graph
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if d == m:
                continue
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)


def test_modules_stay_small():
    big = [f"{p.relative_to(PACKAGE)}: {n} lines" for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not big, f"modules over {MAX_LINES} lines (split them along their natural parts):\n" + "\n".join(big)
