"""``policy serve --workers N``: N serving processes behind the same TCP addresses.

One Python process answers on one core (the GIL, and grpc.aio's single event loop).
With ``--workers N`` the command becomes a small supervisor that starts N worker
processes (each a full ``policy serve``: its own event loop, snapshot, decision
cache, report queue and config watcher). Every worker binds the same TCP listen
addresses with ``SO_REUSEPORT``, so the kernel spreads new connections across them
(Envoy keeps one connection per worker thread to its ext_authz cluster, so the
connections of a busy sidecar land on every worker).

What is refused, and why (checked before any worker starts):

* a ``unix:`` listen address: ``SO_REUSEPORT`` is TCP-only on Linux and gRPC cannot
  serve an inherited listening socket, so several processes cannot share one socket
  path. Use a loopback TCP address with ``--workers N`` (or one worker on the socket);
* port 0: every worker would pick a different port;
* a ``memquota`` handler: its counters live in one process, so N workers would grant N
  times the quota. Use ``redisquota`` (counters shared in Redis) or one worker. A config
  reload that adds one is rejected the same way (the workers keep their last good config).

Signals: SIGTERM / SIGINT to the supervisor is passed to every worker, each drains its
in-flight calls and flushes its reports, and the supervisor exits when all have. A worker
that exits on its own (a crash) makes the supervisor stop the others and exit non-zero,
so the orchestrator restarts the whole set rather than serving on fewer cores unnoticed.

Metrics: worker ``k`` (0-based) serves ``--metrics-listen HOST:PORT`` on ``PORT + k``
(each worker's own counters; with port 0 each picks a free port and prints it).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

def worker_listen_problems(listen: Sequence[str]) -> list[str]:
    """Why ``listen`` cannot be shared by several workers (empty when it can)."""
    problems = []
    for address in listen:
        if address.startswith("unix:"):
            problems.append(f"{address}: a Unix socket cannot be shared by several worker processes"
                            " (SO_REUSEPORT is TCP-only); listen on a loopback TCP address such as"
                            " 127.0.0.1:9191 with --workers > 1, or use --workers 1")
        elif address.rsplit(":", 1)[-1] == "0":
            problems.append(f"{address}: port 0 would give every worker a different port; name a fixed port")
    return problems


def metrics_address_for(address: str | None, index: int) -> str | None:
    """Worker ``index``'s metrics address: ``HOST:PORT+index`` (port 0 stays 0)."""
    if address is None:
        return None
    host, _, port = address.rpartition(":")
    return address if int(port) == 0 else f"{host}:{int(port) + index}"


#: Set in each worker's environment: the supervisor's pid (see :func:`die_with_the_supervisor`).
SUPERVISOR_ENV = "POLICY_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


def die_with_the_supervisor() -> None:
    """In a worker: be sent SIGTERM when the supervisor dies, even by SIGKILL (Linux's PDEATHSIG).

    Called early in a worker's start; if the supervisor is already gone by then (the worker's
    parent is no longer it), the worker stops at once. Elsewhere the supervisor's own signal
    handling is what stops its workers.
    """
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(supervisor):
        os.kill(os.getpid(), signal.SIGTERM)


def run_workers(count: int, worker_args: Any, grace: float) -> int:
    """Start ``count`` workers and supervise them until a signal or a worker's exit; returns the exit code.

    :param worker_args: ``worker_args(index) -> list[str]``: the ``policy serve`` arguments of worker ``index``.
    """
    procs: list[subprocess.Popen] = []
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(count):
            if stopping:
                break
            procs.append(subprocess.Popen([sys.executable, "-m", "policy.cli", "serve", *worker_args(index)],
                                          env={**os.environ, SUPERVISOR_ENV: str(os.getpid())}))
        print(f"policy: supervising {len(procs)} workers (pids {', '.join(str(p.pid) for p in procs)})",
              flush=True)
        code = 0
        alive = {proc.pid: proc for proc in procs}
        while alive:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            proc = alive.pop(pid, None)
            if proc is None:
                continue
            proc.returncode = os.waitstatus_to_exitcode(status)
            if not stopping:
                print(f"policy: worker pid {pid} exited with {proc.returncode}; stopping the others",
                      file=sys.stderr, flush=True)
                code = 1
                stop_all()
            elif proc.returncode not in (0, -signal.SIGTERM):
                code = code or 1
        return code
    finally:
        for proc in procs:  # bounded: each worker drains for at most `grace` seconds
            if proc.returncode is None:
                try:
                    proc.wait(grace + 10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
