"""The guides: every link resolves, and docs/testing.md covers every fixture and helper of policy.testing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import policy.testing
from policy.testing import fixtures

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "examples" / "adapter-plugin" / "README.md"]


def relative_links(path: Path) -> list[str]:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())
    return [link for link in links if not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = [link for link in relative_links(path) if not (path.parent / link).exists()]
    assert broken == [], f"{path.relative_to(ROOT)}: broken links {broken}"


def test_readme_links_the_adapter_guides():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Writing an adapter"):]
    section = section[:section.index("\n## ", 1)]
    for target in ("docs/writing-an-adapter.md", "docs/testing.md", "docs/hooks/README.md",
                   "docs/adapters/README.md", "examples/adapter-plugin/README.md"):
        assert f"]({target})" in section, target


def test_testing_guide_covers_every_fixture_and_helper():
    guide = (ROOT / "docs" / "testing.md").read_text()
    fixture_names = [name for name, value in vars(fixtures).items()
                     if name.startswith("policy_") and hasattr(value, "_fixture_function_marker")
                     or name.startswith("policy_") and type(value).__name__ == "FixtureFunctionDefinition"]
    assert {"policy_config", "policy_server_factory", "policy_call_recorder"} <= set(fixture_names)
    missing = [name for name in [*fixture_names, *policy.testing.__all__]
               if not re.search(rf"\b{name}\b", guide)]
    assert missing == [], f"docs/testing.md does not document {missing}"


def test_public_testing_names_have_docstrings():
    for name in policy.testing.__all__:
        value = getattr(policy.testing, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), f"policy.testing.{name} has no docstring"
