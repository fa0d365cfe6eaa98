"""docs/writing-an-adapter.md, followed to the letter: its package installs, lists, passes its tests, decides."""

from __future__ import annotations

import re
import shlex
import sys

from tests.plugins.conftest import TUTORIAL, policy, run


def shown_blocks(language: str = "") -> list[str]:
    """The tutorial's fenced blocks of one language ('' for plain ones)."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", TUTORIAL.read_text(), re.S | re.M)
    return [body for lang, body in blocks if lang == language]


def squeeze(text: str) -> str:
    return " ".join(text.split())


def test_the_tutorial_commands_are_the_real_ones():
    commands = [line for block in shown_blocks("sh") for line in block.splitlines()]
    assert "policy new-adapter read-only --kind check" in commands
    assert "pip install -e '.[test]'" in commands and "pytest" in commands


def test_installed_adapter_is_listed_as_shown(installed):
    listing = policy("adapters")
    assert listing.returncode == 0, listing.stderr
    shown = next(block for block in shown_blocks() if block.startswith("ADAPTER"))
    row = squeeze(shown.splitlines()[1])
    assert row == "read-only policy-adapter-read-only 0.1.0 authorization"
    assert row in [squeeze(line) for line in listing.stdout.splitlines()]
    assert "Refuses writes to read-only paths" in listing.stdout


def test_tutorial_tests_pass(installed):
    result = run(sys.executable, "-m", "pytest", "-q", cwd=installed.tutorial)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout


def test_tutorial_policy_check_decides_as_shown(installed):
    command = next(line for block in shown_blocks("sh") for line in block.splitlines()
                   if line.startswith("policy check"))
    args = shlex.split(command)[1:]
    result = policy(*args, cwd=installed.tutorial)
    assert result.returncode == 1, result.stdout + result.stderr
    shown = next(block for block in shown_blocks() if block.startswith("decision:"))
    assert shown.strip() in result.stdout
    allowed = policy("check", "--config", "example/", "--attr", "request.method=GET",
                     "--attr", "request.path=/catalog/1", cwd=installed.tutorial)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
