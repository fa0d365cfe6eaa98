"""What a handler may leave behind after ``close()``: asyncio tasks, threads, open files and sockets.

Measured by difference: take a :class:`ResourceSnapshot` before building a handler
and compare one taken after closing it. File descriptors are read from
``/proc/self/fd`` (Linux); elsewhere only tasks and threads are compared.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass


def _fds() -> dict[int, str]:
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return {}
    out = {}
    for name in names:
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
    return out


def _interesting(target: str) -> bool:
    # Files and sockets a handler opened; not the loop's eventfds, epoll or pipes.
    return target.startswith("/") or target.startswith("socket:")


@dataclass(frozen=True)
class ResourceSnapshot:
    """The tasks, threads and descriptors alive at one moment."""

    tasks: frozenset[asyncio.Task]
    threads: frozenset[threading.Thread]
    fds: dict[int, str]

    @classmethod
    def take(cls) -> "ResourceSnapshot":
        """Measure now (call from inside the event loop)."""
        try:
            tasks = frozenset(asyncio.all_tasks())
        except RuntimeError:
            tasks = frozenset()
        return cls(tasks, frozenset(threading.enumerate()), _fds())

    def leaks_since(self, before: "ResourceSnapshot") -> list[str]:
        """What is alive now that was not ``before``, described for a failure message."""
        current = asyncio.current_task() if _in_loop() else None
        leaks = [f"asyncio task {t.get_name()!r} ({t.get_coro()!r}) still pending"
                 for t in self.tasks - before.tasks if not t.done() and t is not current]
        leaks += [f"thread {t.name!r} still alive" for t in self.threads - before.threads if t.is_alive()]
        leaks += [f"descriptor {fd} → {target} still open" for fd, target in sorted(self.fds.items())
                  if before.fds.get(fd) != target and _interesting(target)]
        return leaks


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


async def leaks_after(before: ResourceSnapshot, settle: float = 5.0) -> list[str]:
    """Leaks still present once the handler's cancelled tasks and exiting threads are done.

    Waits on the new tasks themselves (returning as soon as they finish), then on the new
    threads and descriptors; ``settle`` seconds only bound the wait for what never ends
    (a leak), so a busy machine does not turn a slow exit into a reported leak.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    current = asyncio.current_task()
    pending = [t for t in ResourceSnapshot.take().tasks - before.tasks if not t.done() and t is not current]
    if pending:
        await asyncio.wait(pending, timeout=settle)
    leaks = ResourceSnapshot.take().leaks_since(before)
    while leaks and loop.time() < deadline:  # threads and descriptors: no event to wait on
        await asyncio.sleep(0.02)
        leaks = ResourceSnapshot.take().leaks_since(before)
    return leaks
