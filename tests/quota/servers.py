"""``policy serve`` processes for the multi-process quota tests (loopback only, stopped by the test)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.serve_process import serve_on_free_port

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def policy_processes(config: Path, count: int) -> Iterator[list[str]]:
    """Run ``count`` ``policy serve --config config`` processes, each on a port it binds itself
    (``--listen 127.0.0.1:0``); yields their addresses; terminates them after."""
    procs: list[subprocess.Popen] = []
    addresses = []
    try:
        for _ in range(count):
            args = [sys.executable, "-m", "policy.cli", "serve", "--config", str(config),
                    "--watch-interval", "0", "--log-level", "warning"]
            env = {**os.environ, "POLICY_DISABLE_PLUGIN_AUTOLOAD": "1"}
            proc, address = serve_on_free_port(args, cwd=ROOT, env=env)  # stderr: captured by pytest
            procs.append(proc)
            addresses.append(address)
        yield addresses
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
