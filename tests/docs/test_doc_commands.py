"""Every shell command the docs show runs, and prints what the docs say it prints.

Reads README.md, docs/**/*.md and examples/*/README.md. The conventions (also in docs/testing.md):

* Shell commands sit in fenced ```sh blocks; a command may continue over lines ending in ``\\``.
  Each runs with bash from the repository root, with this interpreter's ``bin`` first on PATH.
  It must exit 0 (``policy check`` may exit 1: denied) and print no traceback.
* A line ``#   TEXT`` (hash, three spaces) under a command is output it must print: TEXT must
  match within one line of its stdout or stderr, ``...`` matching anything; numbers before
  ``µs`` / ``ms`` (timings) match any number.
* ``<!-- doc-test: skip: REASON -->`` on the line before a block's fence leaves the block out
  (it needs an outside service, installs packages, or runs until stopped); the reason is required.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "examples").glob("*/README.md")])
SKIP = re.compile(r"<!-- doc-test: skip: (?P<reason>\S.*?) -->")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")
SHELL = {"sh", "bash", "shell", "console"}
COMMAND_WORDS = ("policy ", "make ", "pip ", "python ", "curl ", "kubectl ", "istioctl ", "envoy ", "opa ")


@dataclass
class Command:
    source: str  # file:line
    text: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    source: str
    skip: str | None
    commands: list[Command]


def blocks(path: Path) -> list[Block]:
    """The shell blocks of one Markdown file, with their commands and expected output lines."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start, lang = i, fence.group("lang")
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if lang in SHELL:
            before = lines[start - 1] if start else ""
            skip = SKIP.search(before)
            out.append(Block(f"{path.relative_to(ROOT)}:{start + 1}", skip.group("reason") if skip else None,
                             _commands(path, lines, start + 1, end)))
        i = end + 1
    return out


def _commands(path: Path, lines: list[str], start: int, end: int) -> list[Command]:
    commands: list[Command] = []
    i = start
    while i < end:
        line = lines[i]
        if line.startswith("#   ") and commands:
            commands[-1].expected.append(line[4:].strip())
        elif line.strip() and not line.lstrip().startswith("#"):
            text, source = line, f"{path.relative_to(ROOT)}:{i + 1}"
            while text.rstrip().endswith("\\") and i + 1 < end:
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            commands.append(Command(source, text))
        i += 1
    return commands


def pattern(expected: str) -> re.Pattern[str]:
    """A regex for one expected line: ``...`` matches anything, timing numbers match any number."""
    parts = [re.escape(part) for part in expected.split("...")]
    regex = ".*".join(parts)
    regex = re.sub(r"\d+(?:\\\.\d+)?(\\ )?(µs|ms)", r"[0-9.]+\1\2", regex)
    return re.compile(regex)


ALL = [(block, command) for doc in DOCS for block in blocks(doc) for command in block.commands]
RUN = [(b, c) for b, c in ALL if b.skip is None]


def test_the_docs_have_commands_and_every_skip_gives_a_reason():
    assert len(RUN) >= 15, [c.source for _, c in RUN]
    assert any(c.expected for _, c in RUN)
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if "doc-test:" in line:
                assert SKIP.search(line), f"{doc.relative_to(ROOT)}:{number}: malformed marker {line!r}"


def test_no_command_hides_in_an_indented_block():
    """Indented code blocks are not run: commands must be in ```sh fences."""
    for doc in DOCS:
        inside = False
        previous = ""
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if FENCE.match(line) or line.startswith("```"):
                inside = not inside
            elif not inside and line.startswith("    ") and not previous.strip() \
                    and line.strip().startswith(COMMAND_WORDS):
                raise AssertionError(f"{doc.relative_to(ROOT)}:{number}: a command in an indented block;"
                                     " put it in a ```sh block")
            previous = line if not inside else "x"


def _workdir(tmp_path: Path) -> Path:
    """A directory that looks like the checkout (each top-level entry linked) but keeps what
    a command writes (``policy new-adapter``'s package, an example's output) out of it."""
    work = tmp_path / "checkout"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in (".git", ".venv"):
            (work / entry.name).symlink_to(entry)
    return work


@pytest.mark.parametrize("block, command", RUN, ids=[c.source for _, c in RUN])
def test_command_runs_and_prints_what_the_docs_show(block, command, tmp_path):
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    result = subprocess.run(["bash", "-c", command.text], cwd=_workdir(tmp_path), env=env, capture_output=True,
                            text=True, timeout=120)
    output = result.stdout + result.stderr
    allowed = {0, 1} if command.text.startswith("policy check") else {0}
    assert result.returncode in allowed, f"{command.source}: exit {result.returncode}\n{output}"
    assert "Traceback" not in output, f"{command.source}:\n{output}"
    lines = output.splitlines()
    for expected in command.expected:
        regex = pattern(expected)
        assert any(regex.search(line) for line in lines), \
            f"{command.source}: the docs show {expected!r}, the command printed:\n{output}"
