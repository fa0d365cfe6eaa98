"""Third-party adapter packages really installed into the environment, once for this test package.

The fixture generates one package per kind with ``policy new-adapter`` (and the
tutorial's package), then installs them and ``examples/adapter-plugin`` with one
``pip install --no-deps --no-build-isolation --no-index ...`` (offline: everything
they need is already in the environment), and uninstalls them when the last test of
``tests/plugins`` is done. Everything that needs the installed packages runs in a
subprocess, as a user would run it.

Two choices keep other test processes sharing the environment safe:

- the install is a regular one, not ``-e``: an editable install is importable only
  by processes started after it (its path hook is read at start-up), so any running
  process that autoloads entry points would fail to import these plugins; files in
  site-packages are importable by every process;
- a lock file in the environment serialises the install-test-uninstall span of
  concurrent sessions, so one never uninstalls what another is testing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JWT_EXAMPLE = ROOT / "examples" / "adapter-plugin"
TUTORIAL = ROOT / "docs" / "writing-an-adapter.md"
KINDS = ("check", "quota", "report")


def tutorial_files() -> dict[str, str]:
    """The files docs/writing-an-adapter.md tells the reader to write, by path in the package."""
    text = TUTORIAL.read_text()
    return dict(re.findall(r"<!-- file: (.+?) -->\n```\w+\n(.*?)```", text, re.S))


def run(*args: str, cwd: Path = ROOT, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command to completion, capturing text output."""
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def policy(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the ``policy`` command of this environment."""
    return run(sys.executable, "-m", "policy.cli", *args, cwd=cwd, timeout=timeout)


def pip(*args: str) -> subprocess.CompletedProcess:
    """Run this environment's pip, quietly, without the network's package index."""
    return run(sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args, timeout=300)


@dataclass(frozen=True)
class Installed:
    """The generated packages by kind (adapter ``demo-<kind>``) and the JWT example, all installed."""

    generated: dict[str, Path]
    jwt: Path
    tutorial: Path

    @staticmethod
    def adapter(kind: str) -> str:
        """The adapter name generated for ``kind``."""
        return f"demo-{kind}"


@contextlib.contextmanager
def environment_lock(timeout: float = 900.0) -> Iterator[None]:
    """Hold the environment's plugin-test lock (waiting up to ``timeout`` s for another session)."""
    path = Path(sys.prefix) / ".policy-plugin-tests.lock"
    with path.open("w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another test session held {path} for {timeout:g}s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="package")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """Generate one package per kind, install them and the JWT example; uninstall after this test package."""
    with environment_lock():
        yield from _installed(tmp_path_factory)


def _installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("generated")
    generated = {}
    for kind in KINDS:
        target = base / f"policy-adapter-demo-{kind}"
        result = policy("new-adapter", Installed.adapter(kind), "--kind", kind, "--dir", str(target))
        assert result.returncode == 0, result.stderr
        generated[kind] = target
    # The tutorial's package: generated as the tutorial says, then its files written as it shows them.
    result = policy("new-adapter", "read-only", "--kind", "check", cwd=base)
    assert result.returncode == 0, result.stderr
    tutorial = base / "policy-adapter-read-only"
    files = tutorial_files()
    assert set(files) == {"policy_adapter_read_only/__init__.py", "example/policy.yaml", "tests/test_adapter.py"}
    for name, text in files.items():
        (tutorial / name).write_text(text)
    distributions = [f"policy-adapter-demo-{k}" for k in KINDS] + ["policy-adapter-jwt", "policy-adapter-read-only"]
    pip("uninstall", "-y", *distributions)  # leftovers of an interrupted run
    sources = [str(path) for path in [*generated.values(), JWT_EXAMPLE, tutorial]]
    result = pip("install", "--no-deps", "--no-build-isolation", "--no-index", *sources)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield Installed(generated, JWT_EXAMPLE, tutorial)
    finally:
        pip("uninstall", "-y", *distributions)


class ServedPolicy:
    """``policy serve`` in a subprocess on a loopback port it binds itself (port 0), stopped with SIGTERM."""

    def __init__(self, config: Path) -> None:
        self.address = ""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "policy.cli", "serve", "--config", str(config), "--listen", "127.0.0.1:0",
             "--watch-interval", "0", "--grace", "1"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output: list[str] = []
        assert self.process.stdout is not None
        for _ in range(200):  # bounded: the ready lines come first
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            bound = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
            if bound:  # the port the server bound, read back: no other process can race for it
                self.address = bound.group(1)
                return
        self.stop()
        raise AssertionError("policy serve did not start:\n" + "".join(self.output))

    def stop(self) -> str:
        """SIGTERM, wait for the graceful stop; returns the rest of the output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            rest, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rest, _ = self.process.communicate()
        self.output.append(rest or "")
        return "".join(self.output)


@pytest.fixture
def serve() -> Iterator[type[ServedPolicy]]:
    """``serve(config_path)`` → a :class:`ServedPolicy`; every one is stopped after the test."""
    started: list[ServedPolicy] = []

    class _Tracked(ServedPolicy):
        def __init__(self, config: Path) -> None:
            super().__init__(config)
            started.append(self)

    yield _Tracked
    for served in started:
        served.stop()
