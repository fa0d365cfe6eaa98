"""``policy validate`` refuses exactly what ``policy serve`` refuses, with the same errors.

Every file of ``config_errors/`` is one config error (its first line says which); each runs
through both commands as real subprocesses. Serve's stderr is not a terminal here, so its
errors come as JSON log lines with the issue's place as fields.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((Path(__file__).parent / "config_errors").glob("*.yaml"))


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "POLICY_DISABLE_PLUGIN_AUTOLOAD": "1"}
    try:
        return subprocess.run([sys.executable, "-m", "policy.cli", *args], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired as exc:  # serve accepted the config and kept serving
        raise AssertionError(f"{args[0]} did not exit: it accepted the config\n{exc.stdout}") from None


def validate_errors(result: subprocess.CompletedProcess) -> list[str]:
    return [line.removeprefix("error: ") for line in result.stderr.splitlines() if line.startswith("error: ")]


def serve_errors(result: subprocess.CompletedProcess) -> list[str]:
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    return [r["message"] for r in records if r["level"] == "error" and "file" in r]


def test_the_table_covers_what_only_a_build_used_to_catch():
    names = {case.stem for case in CASES}
    assert {"unknown-authorizationpolicy-field", "rego-does-not-compile", "bad-servicerole"} <= names
    for case in CASES:
        assert case.read_text().startswith("# case: "), f"{case.name}: first line must say what is wrong"


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_validate_and_serve_give_the_same_verdict(case):
    validated = run("validate", str(case))
    served = run("serve", "--config", str(case), "--listen", "127.0.0.1:0", "--watch-interval", "0")
    assert validated.returncode == 2, validated.stdout + validated.stderr
    assert served.returncode == 2, served.stdout + served.stderr
    errors = validate_errors(validated)
    assert errors, validated.stderr
    assert all(e.startswith(f"{case}: ") for e in errors)
    assert serve_errors(served) == errors
    assert "listening on" not in served.stdout
