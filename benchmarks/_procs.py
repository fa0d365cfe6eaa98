"""Start and stop server processes for benchmarks, waiting until they listen."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, task: int | None = None) -> float:
    """User + system CPU seconds a process (all its threads), or one of its threads, has used so far."""
    path = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def process_tree(pid: int) -> list[int]:
    """``pid`` and its child processes (a supervisor's workers)."""
    return [pid] + [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                    for child in (task / "children").read_text().split()]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(address: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            if address.startswith("unix:"):
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(address[len("unix:"):])
            else:
                host, port = address.rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=0.2):
                    pass
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {address} within {timeout}s")


@contextlib.contextmanager
def server_process(args: list[str], listen: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``python args...`` until the block ends; waits for every address to accept."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    try:
        for address in listen:
            _wait_listening(address, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def policy_server(config: Path, listen: list[str], *options: str,
                  ready: tuple[str, ...] = ()) -> contextlib.AbstractContextManager[subprocess.Popen]:
    """Our server (``policy serve``) on ``config``, logging only warnings, with more command-line ``options``;
    waits until it accepts on every ``listen`` address and on the ``ready`` ones (a metrics address)."""
    args = ["-m", "policy.cli", "serve", "--config", str(config), "--log-level", "warning", "--watch-interval", "0"]
    for address in listen:
        args += ["--listen", address]
    return server_process([*args, *options], [*listen, *ready])


def noop_server(listen: list[str]) -> contextlib.AbstractContextManager[subprocess.Popen]:
    """The no-op baseline server on the same stack."""
    args = ["-m", "benchmarks.noop_server"]
    for address in listen:
        args += ["--listen", address]
    return server_process(args, listen)
