"""The import graph of the installed packages keeps its layers (read with ast, nothing imported).

Core (ftmanager) finds backends and engines through entry points and never imports one; a
backend may import ftmanager, and another backend's class only to subclass it (Azure's is
OpenAI's), never another backend's modules or other names; inside a backend nothing imports upward
(the backend's own class, or a folder above its own); ftmanager has no import circle.
Imports inside functions count: they run all the same, only later.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

# What each folder of a backend may import besides itself: its layers, lowest first.
LAYERS = {"ftm_backends.local": {"modeling": set(), "engine": {"modeling"}, "trainer": {"modeling"}}}


def _modules(package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of an installed package."""
    root = Path(importlib.util.find_spec(package).submodule_search_locations[0])
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


MODULES = {**_modules("ftmanager"), **_modules("ftm_backends")}


def _imports(name: str, path: Path) -> set[tuple[str, str]]:
    """(module, imported name or '') for every import in the file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {(alias.name, "") for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = ".".join(p for p in ((base if node.level else ""), node.module or "") if p)
            for alias in node.names:  # `from pkg import mod` imports the module pkg.mod
                sub = f"{module}.{alias.name}"
                out.add((sub, "") if sub in MODULES else (module, alias.name))
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _backend(module: str) -> str | None:
    """The backend package a module belongs to (ftm_backends.<name>), None outside one."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "ftm_backends" and len(parts) > 1 else None


def test_core_never_imports_a_backend():
    found = sorted(f"{m} imports {t}" for m, imported in GRAPH.items() if m.startswith("ftmanager")
                   for t, _ in imported if t.split(".")[0] == "ftm_backends")
    assert not found, "core reaches backends through registry.py and engine.py only:\n" + "\n".join(found)


def _bases(path: Path) -> set[str]:
    """The names a module's classes subclass."""
    return {base.id for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)
            for base in node.bases if isinstance(base, ast.Name)}


def test_a_backend_keeps_out_of_another_backends_internals():
    found = []
    for module, imported in GRAPH.items():
        own = _backend(module)
        for target, name in imported:
            other = _backend(target)
            if own and other and other != own and not (target == other and name in _bases(MODULES[module])):
                found.append(f"{module} imports {target}{'.' + name if name else ''}")
    assert not found, "a backend may subclass another's backend class, nothing else:\n" + "\n".join(sorted(found))


def _upward(module: str, target: str) -> bool:
    """Whether module imports its own backend's class module, or a folder its layer may not use."""
    backend = _backend(module)
    if backend is None or module == backend or _backend(target) != backend:
        return False
    if target == backend:
        return True
    layers = LAYERS.get(backend, {})
    mine, theirs = module.split(".")[2], target.split(".")[2]
    return mine in layers and theirs != mine and theirs not in layers[mine]


def test_nothing_in_a_backend_imports_upward():
    found = sorted({f"{m} imports {t}" for m, imported in GRAPH.items() for t, _ in imported if _upward(m, t)})
    assert not found, "\n".join(found)


def _circles() -> list[list[str]]:
    """Every strongly connected group of more than one module among ftmanager's (Tarjan's).

    A module's import of a package it lives in is left out: Python runs the package's __init__
    before any of its modules, so that edge orders nothing (cli's topics take `app` from cli)."""
    edges = {m: {t for t, _ in GRAPH[m] if t in MODULES and t.startswith("ftmanager")
                 and not m.startswith(t + ".")}
             for m in GRAPH if m.startswith("ftmanager")}
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def test_no_import_circle_in_ftmanager():
    circles = _circles()
    assert not circles, "modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_graph_sees_the_imports_it_judges():
    """The walk finds real edges, so an empty list above means something."""
    assert ("ftmanager.engine", "") in GRAPH["ftmanager.serve.models"]
    assert ("ftm_backends.local.modeling.loading", "") in GRAPH["ftm_backends.local.engine"]
    assert ("ftmanager.engine", "PromptTooLong") in GRAPH["ftm_backends.local.engine.rows"]
    assert any(t == "ftm_backends.local.engine.pool" for t, _ in GRAPH["ftm_backends.local.engine"])
    assert _upward("ftm_backends.local.modeling.loading", "ftm_backends.local.trainer.train")
    assert _upward("ftm_backends.local.engine.pool", "ftm_backends.local")
    assert not _upward("ftm_backends.local", "ftm_backends.local.engine.pool")
