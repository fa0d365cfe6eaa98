"""Helpers for tests that run ``policy serve`` as a subprocess."""

from __future__ import annotations

import subprocess
import threading


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
