"""Imports point down the layers only, and no module cycle exists (issue 16, DESIGN.md "Layers").

Every module under ``policy/`` is parsed with :mod:`ast`; every import in it (module level,
inside functions, under ``if TYPE_CHECKING:``) is mapped to its layer. An import of a higher
layer fails, and so does a cycle between modules (found over the whole import graph, deferred
imports included, so a function-level import cannot hide one).

Layers, bottom up: base (generated protobufs, logging helpers, the error root) → attributes →
expr → sdk → config → runtime → servers → tools (cli, testing, docs, scaffold). Wire formats
(gRPC, Envoy's and Google's protobufs) are imported only by the transports and the tools.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "policy"

#: Module prefix → layer rank; the longest matching prefix wins.
LAYERS: dict[str, int] = {
    "policy.error_base": 0,
    "policy.logs": 0,
    "policy.v1": 0,
    "policy._protogen": 0,
    "policy.attributes": 1,
    "policy.expr": 2,
    "policy": 3,  # the package itself re-exports the SDK
    "policy.sdk": 3,
    "policy.hookspecs": 3,
    "policy.config": 4,
    "policy.config.ratelimit": 4,  # until its loading moves into config (issue 16)
    "policy.runtime": 5,
    "policy.servers": 6,
    "policy.cli": 7,
    "policy.cli_values": 7,
    "policy.docs": 7,
    "policy.sdk_reference": 7,
    "policy.scaffold": 7,
    "policy.testing": 7,
}
NAMES = {0: "base", 1: "attributes", 2: "expr", 3: "sdk", 4: "config", 5: "runtime", 6: "servers", 7: "tools"}

#: (importer, imported) pairs allowed to point up, each with its reason. Empty: nothing may.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}

#: Wire libraries: only transports translate to and from them (and the tools that drive transports).
TRANSPORT_LIBRARIES = ("grpc", "grpc_health", "grpc_reflection", "envoy", "xds", "udpa", "google.protobuf",
                       "google.rpc")
#: Layers that may import a wire library: base (the generated policy.v1 messages), servers, tools.
TRANSPORT_LAYERS = {0, 6, 7}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _all_imports(path: Path, module: str) -> list[str]:
    """Every module name ``path`` imports (absolute, relative ones resolved), wherever the statement sits."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.append(_resolve(module, path.name == "__init__.py", node))
    return names


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every ``policy`` module ``module`` imports, wherever the import statement sits."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            # ``from policy.x import y`` imports the submodule policy.x.y when there is one.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "policy" or target.startswith("policy."):
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != module:
                    found.add(target)
    return found


def _layer(module: str) -> int:
    best = ""
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    if not best:
        raise AssertionError(f"{module}: not assigned to a layer (add it to LAYERS)")
    return LAYERS[best]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    for module in graph:
        _layer(module)


def test_imports_point_down(graph: dict[str, set[str]]) -> None:
    upward = []
    for module, targets in graph.items():
        for target in targets:
            if _layer(target) > _layer(module) and (module, target) not in ALLOWED_UPWARD:
                upward.append(f"{module} ({NAMES[_layer(module)]}) imports {target} ({NAMES[_layer(target)]})")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_only_transports_speak_wire_formats() -> None:
    """Protobuf and gRPC types stay in the transports: the runtime answers neutral results."""
    offending = []
    for module, path in _modules().items():
        if _layer(module) in TRANSPORT_LAYERS:
            continue
        for name in _all_imports(path, module):
            if any(name == lib or name.startswith(lib + ".") for lib in TRANSPORT_LIBRARIES):
                offending.append(f"{module} imports {name}")
    assert not offending, "\n".join(offending)


def _package_of(module: str) -> str:
    """The package a module's cycle check runs over: a subpackage of policy, or the module itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in edges:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_package_cycles(graph: dict[str, set[str]]) -> None:
    """No two subpackages of policy import each other, even through function-level imports."""
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = _package_of(module)
        edges.setdefault(source, set())
        for target in targets:
            if _package_of(target) != source:
                edges[source].add(_package_of(target))
    # ``policy`` itself (the SDK re-export) is imported by everything and imports only policy.sdk.
    assert not _cycles(edges)


def test_no_module_cycles_outside_packages_init(graph: dict[str, set[str]]) -> None:
    """No module cycle: a package's ``__init__`` re-exporting its modules is the only back edge allowed."""
    edges = {m: {t for t in ts if not (t != m and m.startswith(t + ".") and _is_package(t))}
             for m, ts in graph.items()}
    assert not _cycles(edges)


def _is_package(module: str) -> bool:
    return (ROOT / Path(*module.split(".")) / "__init__.py").exists()


def test_the_checker_sees_deferred_and_type_checking_imports(tmp_path: Path) -> None:
    """The walker finds imports inside functions and ``if TYPE_CHECKING:`` blocks."""
    source = tmp_path / "mod.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from policy.runtime.plugins import PluginHost\n"
                      "def f():\n    from policy.servers import app\n")
    known = {"policy.runtime.plugins", "policy.servers", "policy.servers.app"}
    found = _imports("policy.config.mod", source, known)
    assert found == {"policy.runtime.plugins", "policy.servers.app"}
