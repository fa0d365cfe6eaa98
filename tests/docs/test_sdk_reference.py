"""The SDK reference (docs/sdk.md, rendered by MkDocs + mkdocstrings) covers every public name of
``policy``, is what ``make docs`` generates, and builds offline without a warning."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import policy
from policy.sdk_reference import ATTRIBUTES, SECTIONS, placed_names, sdk_page

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = [(name, module) for _, _, entries in SECTIONS for name, module in entries]


def test_every_public_name_is_placed_exactly_once():
    counts = Counter(placed_names())
    assert [n for n, c in counts.items() if c > 1] == []
    assert set(counts) == set(policy.__all__), (
        f"missing from SECTIONS: {sorted(set(policy.__all__) - set(counts))};"
        f" not public: {sorted(set(counts) - set(policy.__all__))}")


@pytest.mark.parametrize("name, module", ENTRIES, ids=[n for n, _ in ENTRIES])
def test_each_entry_names_where_the_object_is_defined_and_is_documented(name, module):
    obj = getattr(importlib.import_module(module), name)
    assert obj is getattr(policy, name)
    if name in ATTRIBUTES:
        return
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"policy.{name} has no docstring"
    if dataclasses.is_dataclass(obj):  # the reference shows every field with its meaning
        undocumented = [f.name for f in dataclasses.fields(obj) if f":param {f.name}:" not in doc]
        assert undocumented == [], f"policy.{name}: fields without a :param: line: {undocumented}"


def test_param_types_are_documented():
    doc = inspect.getdoc(importlib.import_module("policy.sdk.params")) or ""
    for kind in ("str", "int", "float", "bool", "timedelta", "Enum", "list[X]", "dict[str, X]", "X | None",
                 "Literal", "dataclasses"):
        assert kind in doc, f"policy.sdk.params' docstring does not mention {kind}"


def test_checked_in_page_is_up_to_date():
    assert (ROOT / "docs" / "sdk.md").read_text() == sdk_page(), \
        "docs/sdk.md is stale — run `make docs` and commit the result"


def test_mkdocs_builds_the_site_strictly_offline(tmp_path):
    pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    page = (site / "sdk" / "index.html").read_text()
    text = re.sub(r"<[^>]+>", " ", page)
    for name in ("CheckResult", "QuotaResult", "HeaderOperation", "BuildContext", "Handler", "Adapter",
                 "ConfigError", "ListEntry", "valid_duration", "granted_amount"):
        assert name in text, f"{name} is not on the rendered SDK page"
    shutil.rmtree(site)
