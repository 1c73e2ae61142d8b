"""The HTTP front's layers hold: the generic front imports neither OpenAI's surface nor the
stand-ins, OpenAI's surface imports no stand-in, nothing among them imports in a circle, and
`ftm serve` loads no stand-in code at all (no fault is consulted, no request counted): not at
start-up, and no serve module imports one anywhere, directly or through the library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ftmanager

ROOT = Path(ftmanager.__file__).parent
AREAS = ("front", "standin", "serve")


def modules(areas: tuple[str, ...] | None = AREAS) -> dict[str, set[str]]:
    """Each ftmanager module of the areas (None: of the whole library) -> the ftmanager modules it
    imports, at its top or inside a function (an import a call makes is a dependency too)."""
    names = {_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in names.items():
        if areas is None or (name.split(".")[1:2] and name.split(".")[1] in areas):
            graph[name] = {t for t in _imports(name, path, names) if t in names and t != name}
    return graph


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(name: str, path: Path, names: dict) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            children = {f"{target}.{a.name}" for a in node.names} & set(names)
            found.update(children if len(children) == len(node.names) else children | {target})
    return found


def _within(graph: dict, module: str) -> set[str]:
    """Everything module imports, directly or not, inside the areas."""
    seen, todo = set(), [module]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_each_layer_imports_only_the_ones_below_it():
    graph = modules()
    generic = [m for m in graph if m.startswith("ftmanager.front") and not m.startswith("ftmanager.front.openai")]
    assert "ftmanager.front.server" in generic and "ftmanager.front.openai.routes" in graph
    for module in generic:
        above = {d for d in graph[module] if d.startswith(("ftmanager.front.openai", "ftmanager.standin",
                                                            "ftmanager.serve"))}
        assert not above, f"{module} (generic front) imports {sorted(above)}"
    for module in (m for m in graph if m.startswith("ftmanager.front.openai")):
        assert not {d for d in graph[module] if d.startswith(("ftmanager.standin", "ftmanager.serve"))}, module


def test_no_import_circle_among_the_front_the_standins_and_serve():
    graph = modules()
    for module in graph:
        # a package's __init__ importing its own children is how a package is made, not a circle
        back = {d for d in _within(graph, module) if module in graph.get(d, ()) and not module.startswith(d + ".")
                and not d.startswith(module + ".")}
        assert not back, f"{module} is imported back by {sorted(back)}"


def test_no_serve_module_imports_standin_code_even_through_the_library():
    graph = modules(None)
    serve = [m for m in graph if m.startswith("ftmanager.serve")]
    assert "ftmanager.serve.imports" in serve and "ftmanager.serve.local_service" in serve
    for module in serve:
        found = sorted(d for d in _within(graph, module) if d.startswith("ftmanager.standin"))
        assert not found, f"{module} imports stand-in code: {found}"


def test_ftm_serve_loads_no_standin_code():
    code = ("import sys, ftmanager.serve, ftmanager.cli.serve\n"
            "print(sorted(m for m in sys.modules if m.startswith('ftmanager.standin')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
