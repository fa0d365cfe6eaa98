"""Helpers for tests that run ``policy serve`` as a subprocess."""

from __future__ import annotations

import re
import subprocess
import threading
from typing import Any


def read_until(proc: subprocess.Popen, marker: str, timeout: float = 20.0) -> list[str]:
    """Read ``proc``'s stdout lines until one contains ``marker``; fail after ``timeout`` seconds.

    Reading happens on a thread, so a server that never prints the marker fails the
    test instead of hanging it.
    """
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if marker in line:
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout), f"no {marker!r} line within {timeout}s; got {lines}"
    return lines


_LISTENING = re.compile(r"policy: listening on (127\.0\.0\.1:\d+)")


def bound_address(lines: list[str]) -> str:
    """The loopback TCP address ``policy serve`` reported (``--listen 127.0.0.1:0``: the port it bound).

    Binding port 0 in the server itself leaves no window in which another process could
    take a port the test picked and closed.
    """
    for line in lines:
        found = _LISTENING.search(line)
        if found:
            return found.group(1)
    raise AssertionError(f"no 'listening on 127.0.0.1:PORT' line in {lines}")


def serve_on_free_port(args: list[str], timeout: float = 30.0, **popen: Any) -> tuple[subprocess.Popen, str]:
    """Start ``args`` (a ``policy serve`` command line without ``--listen``) on ``127.0.0.1:0``.

    Returns the process (stdout piped, text) and the address it reported once listening.
    """
    proc = subprocess.Popen([*args, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True, **popen)
    try:
        return proc, bound_address(read_until(proc, "listening on 127.0.0.1:", timeout=timeout))
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
