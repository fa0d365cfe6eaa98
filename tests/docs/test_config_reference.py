"""docs/config-reference.md documents every key of the compact format, with the defaults the code uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from policy import describe_params
from policy.config.compact import COMPACT_KEYS, HANDLER_KEYS, INSTANCE_KEYS, RULE_KEYS
from policy.config.model import DEFAULT_TIMEOUT, CacheParams, SettingsParams
from policy.config.rulebody import ACTION_KEYS, HEADER_OP_KEYS
from policy.config.ratelimit.limits import RateLimitSettings
from policy.sdk import FailMode, HeaderOperationKind

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "config-reference.md").read_text()


def section(heading: str) -> str:
    """The text of the section under ``heading`` (up to the next heading of any level)."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#|\Z)", PAGE, re.S | re.M)
    assert match, f"no section {heading!r}"
    return match.group(1)


def table_keys(text: str) -> dict[str, tuple[str, str]]:
    """``key`` → (type, default) of a section's table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


@pytest.mark.parametrize("heading, keys", [
    ("`settings`", [r["name"] for r in describe_params(SettingsParams) if "." not in r["name"]]),
    ("`settings.cache`", [r["name"] for r in describe_params(CacheParams)]),
    ("`settings.rateLimit`", [r["name"] for r in describe_params(RateLimitSettings)]),
    ("`handlers`", list(HANDLER_KEYS)),
    ("`instances`", list(INSTANCE_KEYS)),
    ("`rules`", list(RULE_KEYS)),
    ("An action", list(ACTION_KEYS)),
    ("A header operation", list(HEADER_OP_KEYS)),
])
def test_every_key_has_a_row(heading, keys):
    assert sorted(table_keys(section(heading))) == sorted(keys)


def test_top_level_keys_are_the_sections():
    for key in COMPACT_KEYS:
        assert f"## `{key}`" in PAGE


def test_defaults_are_the_codes():
    cache = table_keys(section("`settings.cache`"))
    defaults = CacheParams()
    assert cache["maxEntries"][1] == f"`{defaults.max_entries}`"
    assert cache["defaultValidUseCount"][1] == f"`{defaults.default_valid_use_count}`"
    assert cache["maxShapes"][1] == f"`{defaults.max_shapes}`"
    assert cache["defaultValidDuration"][1] == f"`{int(defaults.default_valid_duration.total_seconds())}s`"
    assert cache["enabled"][1] == f"`{str(defaults.enabled).lower()}`"
    settings = table_keys(section("`settings`"))
    assert settings["rootNamespace"][1] == f"`{SettingsParams().root_namespace}`"
    assert settings["identityAttributes"][1] == f"`[{', '.join(SettingsParams().identity_attributes)}]`"
    handlers = table_keys(section("`handlers`"))
    assert handlers["timeout"][1] == f"`{DEFAULT_TIMEOUT:g}s`"
    assert handlers["failMode"] == (" or ".join(f"`{m.name}`" for m in FailMode), f"`{FailMode.CLOSED.name}`")
    ops = table_keys(section("A header operation"))
    assert ops["operation"][1] == f"`{HeaderOperationKind.REPLACE.name}`"
    for kind in HeaderOperationKind:
        assert f"`{kind.name}`" in ops["operation"][0]
