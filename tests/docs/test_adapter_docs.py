"""Every built-in adapter param is documented, and docs/adapters/ matches what `make docs` generates."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from policy import Variety, describe_params
from policy.docs import adapter_pages, stale_adapter_pages
from policy.runtime.plugins import build_plugin_host

ROOT = Path(__file__).resolve().parents[2]
HOST = build_plugin_host(autoload=False)
BUILTINS = sorted(r.name for r in HOST.adapters)


@pytest.mark.parametrize("name", BUILTINS)
def test_every_param_has_a_doc(name):
    adapter = HOST.adapters.get(name).adapter
    undocumented = [row["name"] for row in describe_params(adapter.Params) if not row["doc"].strip()]
    assert undocumented == [], f"adapter {name}: params without a doc: {undocumented} (use param(..., doc=...))"


@pytest.mark.parametrize("name", BUILTINS)
def test_module_docstring_states_fail_mode_cacheability_and_limits(name):
    adapter = HOST.adapters.get(name).adapter
    doc = inspect.getdoc(inspect.getmodule(adapter)) or ""
    headings = [line for line in doc.splitlines() if line and not line[0].isspace()]
    required = ["Fail mode", "Limits"]
    if any(HOST.templates.get(t).variety is not Variety.REPORT for t in adapter.templates):
        required.append("Cacheability")
    for heading in required:
        assert any(h.startswith(heading) for h in headings), f"adapter {name}: its module docstring has no {heading!r} section"


def test_checked_in_adapter_pages_are_up_to_date():
    problems = stale_adapter_pages(HOST, ROOT / "docs" / "adapters")
    assert not problems, ("docs/adapters/ is stale — run `make docs` and commit the result:\n  "
                          + "\n  ".join(problems))


def test_pages_carry_params_templates_and_notes():
    pages = adapter_pages(HOST)
    assert set(pages) == {f"{name}.md" for name in BUILTINS} | {"README.md"}
    denier = pages["denier.md"]
    assert "| `validDuration` | duration | `5s` | How long the answer may be cached (0s: never). |" in denier
    assert "- Templates: `checknothing` (check)" in denier
    for heading in ("## What it does", "## Fail mode", "## Cacheability", "## Limits"):
        assert heading in denier
    for name in BUILTINS:
        assert f"[{name}]({name}.md)" in pages["README.md"]


def test_stale_pages_are_detected_and_rewritten(tmp_path):
    from policy.docs import write_adapter_pages

    written = write_adapter_pages(HOST, tmp_path)
    assert stale_adapter_pages(HOST, tmp_path) == []
    (tmp_path / "denier.md").write_text("old")
    (tmp_path / "gone.md").write_text((tmp_path / "stdio.md").read_text())
    (tmp_path / "notes.md").write_text("mine, not generated")
    problems = stale_adapter_pages(HOST, tmp_path)
    assert any(p.endswith("denier.md is out of date") for p in problems)
    assert any(p.endswith("gone.md documents an adapter that no longer exists") for p in problems)
    write_adapter_pages(HOST, tmp_path)
    assert stale_adapter_pages(HOST, tmp_path) == []
    assert not (tmp_path / "gone.md").exists() and (tmp_path / "notes.md").exists()
    assert len(written) == len(BUILTINS) + 1


def test_cli_writes_the_pages(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "policy.cli", "adapters", "--markdown", "--no-autoload",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert stale_adapter_pages(HOST, tmp_path) == []
    assert re.search(r"wrote .*denier\.md", result.stdout)
    usage = subprocess.run([sys.executable, "-m", "policy.cli", "adapters", "--out", str(tmp_path)],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert usage.returncode == 2 and "give --markdown too" in usage.stderr
