"""``policy serve`` processes for the multi-process quota tests (loopback only, stopped by the test)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _wait(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"policy serve exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"policy serve did not listen on port {port} within {timeout}s")


@contextlib.contextmanager
def policy_processes(config: Path, ports: list[int]) -> Iterator[list[str]]:
    """Run one ``policy serve --config config`` per port; yields their addresses; terminates them after."""
    procs = []
    try:
        for port in ports:
            args = [sys.executable, "-m", "policy.cli", "serve", "--config", str(config), "--listen",
                    f"127.0.0.1:{port}", "--watch-interval", "0", "--log-level", "warning"]
            env = {**os.environ, "POLICY_DISABLE_PLUGIN_AUTOLOAD": "1"}
            procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE))
        for port, proc in zip(ports, procs):
            _wait(port, proc)
        yield [f"127.0.0.1:{p}" for p in ports]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
