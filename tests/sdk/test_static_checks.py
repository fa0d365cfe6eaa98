"""The habits `make test` enforces: ruff on the source, ``mypy --strict`` on what plugin authors see.

Checked strictly: the public SDK (``policy/sdk``, ``policy/__init__.py``, the hook
specs), every built-in adapter (``adapters/``), the output of every ``policy new-adapter`` kind (generated into a temporary
directory here), ``examples/adapter-plugin`` and the adapter of the writing-an-adapter
guide. The rule sets and their reasons are in ``pyproject.toml``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from policy.scaffold import KINDS, Names, generate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the module's runs (the SDK is analysed once, not once per target)."""
    return tmp_path_factory.mktemp("mypy-cache")


def mypy(cwd: Path, cache: Path, *targets: str, strict_flags: bool = True) -> str:
    """Run mypy in ``cwd`` (seeing this checkout's ``policy`` first); returns its report."""
    flags = ["--strict", "--follow-imports=silent", "--config-file", str(ROOT / "pyproject.toml")] \
        if strict_flags else []
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), *flags, *targets],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"mypy in {cwd} found problems:\n{report}"
    return report


def test_ruff_finds_nothing() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"ruff (rules in pyproject.toml):\n{done.stdout}{done.stderr}"


# Built-in adapter modules with mypy findings left, excluded in pyproject.toml (none now; keep it so).
STILL_UNTYPED: set[str] = set()


def test_the_public_sdk_and_the_builtin_adapters_are_strictly_typed(mypy_cache: Path) -> None:
    report = mypy(ROOT, mypy_cache, strict_flags=False)  # the files and flags of [tool.mypy]
    found = re.search(r"Success: no issues found in (\d+) source files", report)
    assert found, report
    adapters = [p for p in (ROOT / "adapters").rglob("*.py") if p.relative_to(ROOT).as_posix() not in STILL_UNTYPED]
    assert int(found.group(1)) > len(adapters)  # every other adapter module, and the SDK besides


@pytest.mark.parametrize("kind", KINDS)
def test_every_scaffold_generates_strictly_typed_lint_free_code(kind: str, tmp_path: Path, mypy_cache: Path) -> None:
    target = generate(f"typed-{kind}", kind, tmp_path / kind)
    mypy(target, mypy_cache, Names(f"typed-{kind}", kind).package, "tests")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                           str(ROOT / "pyproject.toml"), "."], cwd=target, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"ruff on the generated {kind} package:\n{done.stdout}{done.stderr}"


def test_the_example_plugin_is_strictly_typed(mypy_cache: Path) -> None:
    mypy(ROOT / "examples" / "adapter-plugin", mypy_cache, "policy_jwt", "tests", "example")


@pytest.mark.parametrize(("page", "marker"), [("docs/writing-an-adapter.md", "class ReadOnly("),
                                              ("README.md", "class UserAdapter(")])
def test_the_documented_adapters_are_strictly_typed(page: str, marker: str, tmp_path: Path,
                                                    mypy_cache: Path) -> None:
    text = (ROOT / page).read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if marker in b]
    assert blocks, f"{page}: the adapter's python block is gone"
    (tmp_path / "documented_adapter.py").write_text(blocks[0])
    mypy(tmp_path, mypy_cache, "documented_adapter.py")


def test_the_sdk_contract_is_typed_where_it_was_not() -> None:
    """The three holes that made every generated adapter fail mypy stay closed."""
    from typing import get_type_hints

    from policy import Adapter, Handler

    assert Adapter.__parameters__, "Adapter is generic over its params"
    for method in ("check", "quota", "report", "start", "close"):
        hint = str(get_type_hints(getattr(Handler, method))["return"])
        assert "Awaitable" in hint, f"Handler.{method} must allow async overrides: {hint}"


def test_the_plugin_host_is_what_config_needs(tmp_path: Path, mypy_cache: Path) -> None:
    """Config depends on its Catalog protocol only; the runtime's plugin host must satisfy it."""
    (tmp_path / "catalog.py").write_text(
        "from policy.config.catalog import Catalog\n"
        "from policy.runtime.plugins import PluginHost\n\n\n"
        "def catalog(host: PluginHost) -> Catalog:\n"
        "    return host\n")
    mypy(tmp_path, mypy_cache, "catalog.py")


def test_the_host_hands_hooks_what_the_protocols_promise(tmp_path: Path, mypy_cache: Path) -> None:
    """The service, snapshot and registries the host passes to hooks meet the SDK's protocols."""
    (tmp_path / "views.py").write_text(
        "from policy import AdapterRegistrar, ServiceView, SnapshotView, TemplateRegistrar\n"
        "from policy.runtime.registry import AdapterRegistry, TemplateRegistry\n"
        "from policy.runtime.service import PolicyService\n"
        "from policy.config.snapshot import Snapshot\n\n\n"
        "def views(service: PolicyService, snapshot: Snapshot, adapters: AdapterRegistry,\n"
        "          templates: TemplateRegistry) -> tuple[ServiceView, SnapshotView, AdapterRegistrar,"
        " TemplateRegistrar]:\n"
        "    return service, snapshot, adapters, templates\n")
    mypy(tmp_path, mypy_cache, "views.py")
