"""Every hook has a reference page naming it and its parameters, with an example that really runs."""

from __future__ import annotations

import inspect
import logging
import re
import sys
import types
from pathlib import Path

import pytest

from policy.runtime.plugins import build_plugin_host
from policy.testing.recorder import hook_specs

ROOT = Path(__file__).resolve().parents[2]
HOOK_DOCS = ROOT / "docs" / "hooks"
SPECS = hook_specs()


def page(name: str) -> str:
    path = HOOK_DOCS / f"{name}.md"
    assert path.is_file(), f"hook {name} is undocumented: write {path.relative_to(ROOT)} (see docs/hooks/README.md)"
    return path.read_text()


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no '## {title}' section"
    return match.group(1)


def example(name: str) -> types.ModuleType:
    code = re.search(r"```python\n(.*?)```", section(page(name), "Example"), re.S)
    assert code, f"docs/hooks/{name}.md: the Example section has no python block"
    module = types.ModuleType(f"docs_example_{name}")
    sys.modules[module.__name__] = module  # as an imported plugin module would be
    exec(compile(code.group(1), f"docs/hooks/{name}.md", "exec", dont_inherit=True), module.__dict__)
    return module


def test_there_are_hooks_to_document():
    assert {"policy_register_adapters", "policy_startup"} <= set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_page_names_the_hook_and_every_parameter(name):
    text = page(name)
    assert text.startswith(f"# {name}\n")
    signature = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert f"def {name}(" in signature
    params = section(text, "Parameters")
    for parameter in inspect.signature(SPECS[name]).parameters:
        assert f"`{parameter}`" in params, f"docs/hooks/{name}.md does not document parameter {parameter!r}"
        assert parameter in signature
    if not inspect.signature(SPECS[name]).parameters:
        assert "None" in params
    assert "None" in section(text, "Returns"), "say what None means"
    assert "## When it is called" in text and "Added in" in text
    index = (HOOK_DOCS / "README.md").read_text()
    assert f"[`{name}`]({name}.md)" in index, f"docs/hooks/README.md does not link {name}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_docstring_follows_the_house_style(name):
    doc = inspect.getdoc(SPECS[name]) or ""
    assert doc.splitlines()[0].endswith("."), "a one-line summary first"
    for parameter in inspect.signature(SPECS[name]).parameters:
        assert f":param {parameter}:" in doc
    assert ":return:" in doc and ".. versionadded::" in doc


def test_no_page_documents_a_hook_that_does_not_exist():
    pages = {p.stem for p in HOOK_DOCS.glob("*.md")} - {"README"}
    assert pages == set(SPECS)


CONFIG = """
handlers:
  - {name: deny-guests, adapter: denier, params: {status: {code: PERMISSION_DENIED}}}
  - {name: access, adapter: stdio, params: {logStream: FILE, outputPath: access.log}}
instances:
  - {name: nothing, template: checknothing, params: {}}
  - {name: line, template: logentry, params: {variables: {}}}
rules:
  - {name: guests, match: 'request.headers["x-user"] == "guest"', actions: [{handler: deny-guests, instances: [nothing]}]}
  - {name: log, actions: [{handler: access, instances: [line]}]}
"""


async def test_every_example_runs_in_a_real_host_and_service(policy_config, policy_service_factory, caplog):
    modules = {name: example(name) for name in SPECS}
    host = build_plugin_host(autoload=False, extra_plugins=list(modules.values()))
    for name, module in modules.items():
        impls = {impl.plugin for impl in getattr(host.pm.hook, name).get_hookimpls()}
        assert module in impls, f"the example of {name} does not implement it"
    assert "open-hours" in host.adapters
    assert "apikey" in host.templates
    assert host.vocabulary.get("example.tenant") is not None

    caplog.set_level(logging.INFO, logger="example.plugin")
    service = await policy_service_factory(policy_config(CONFIG), *modules.values())
    assert (await service.check({"request.headers": {"x-user": "guest"}})).code.name == "PERMISSION_DENIED"
    service.report([{}])
    await service.stop()
    assert modules["policy_config_loaded"].GENERATIONS == [1]
    messages = [r.getMessage() for r in caplog.records if r.name == "example.plugin"]
    assert "serving 2 rules with 2 handlers" in messages
    assert "access: 1 reports delivered, 0 dropped" in messages
