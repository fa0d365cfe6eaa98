"""`policy serve --workers N`: N processes behind one TCP address, stopped together, memquota refused."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from policy.runtime.service import PolicyService
from policy.servers.native_codec import attributes_to_proto
from policy.testing import free_port
from policy.v1 import policy_pb2, policy_pb2_grpc
from tests.serve_process import read_until

ROOT = Path(__file__).resolve().parents[2]

ALLOW_INTERNAL = """
handlers:
  - name: internal
    adapter: listchecker
    params: {entryType: IP_ADDRESSES, overrides: ["10.0.0.0/8"]}
instances:
  - {name: source-ip, template: listentry, params: {value: 'source.ip | ip("0.0.0.0")'}}
rules:
  - {name: internal-only, actions: [{handler: internal, instances: [source-ip]}]}
"""

MEMQUOTA = """
handlers:
  - name: local-counts
    adapter: memquota
    params: {quotas: [{name: requests, maxAmount: 10, validDuration: 1s}]}
instances:
  - {name: requests, template: quota, params: {dimensions: {}}}
rules:
  - {name: count, actions: [{handler: local-counts, instances: [requests]}]}
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _serve(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "policy.cli", "serve", "--config", str(config),
                             "--log-level", "warning", "--watch-interval", "0", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _pids_serving_connections(pids: set[int], port: int) -> set[int]:
    """Which of ``pids`` hold an established TCP connection on local ``port`` (from /proc)."""
    by_inode: dict[str, int] = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                by_inode[target[len("socket:["):-1]] = pid
    serving = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01" and fields[9] in by_inode:  # 01: ESTABLISHED
                    serving.add(by_inode[fields[9]])
    return serving


def _answering_pids(address: str, workers: set[int], attempts: int = 200) -> set[int]:
    """The workers that hold connections on which checks were answered, opening new ones until all do."""
    port = int(address.rsplit(":", 1)[1])
    request = policy_pb2.CheckRequest(attributes=attributes_to_proto({"source.ip": ipaddress.ip_address("10.0.0.1")}))
    channels = []
    try:
        for _ in range(attempts):  # SO_REUSEPORT spreads new connections by their source port
            channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
            channels.append(channel)
            response = policy_pb2_grpc.PolicyStub(channel).Check(request, timeout=10)
            assert response.precondition.status.code == 0, response.precondition.status
            serving = _pids_serving_connections(workers, port)
            if serving == workers:
                return serving
        return _pids_serving_connections(workers, port)
    finally:
        for channel in channels:
            channel.close()


def _two_workers(tmp_path: Path) -> tuple[subprocess.Popen, str, list[int]]:
    """``serve --workers 2`` on ALLOW_INTERNAL: (the supervisor, the address, the worker pids) once both listen."""
    config = tmp_path / "policy.yaml"
    config.write_text(ALLOW_INTERNAL)
    address = f"127.0.0.1:{free_port()}"
    proc = _serve(config, "--listen", address, "--workers", "2")
    try:
        lines = read_until(proc, "supervising")
        pids = [int(pid) for pid in lines[-1].split("pids ")[1].rstrip(")\n").split(", ")]
        read_until(proc, f"listening on {address}")
        read_until(proc, f"listening on {address}")
    except BaseException:
        proc.kill()
        proc.wait(30)
        raise
    return proc, address, pids


def test_two_workers_answer_on_one_port_and_sigterm_stops_both(tmp_path):
    proc, address, pids = _two_workers(tmp_path)
    workers = set(pids)
    try:
        assert len(workers) == 2
        assert _answering_pids(address, workers) == workers
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.count("policy: stopped") == 2
    assert not any(_alive(pid) for pid in workers)


def test_a_crashed_worker_stops_the_others(tmp_path):
    proc, _, (first, second) = _two_workers(tmp_path)
    try:
        os.kill(first, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert f"worker pid {first} exited" in err
    assert not _alive(second)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's new parent may be slow to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_die_with_a_killed_supervisor(tmp_path):
    # SIGKILL leaves the supervisor no chance to stop its workers: they must not live on, holding the port.
    proc, _, workers = _two_workers(tmp_path)
    proc.kill()
    proc.wait(30)
    deadline = time.monotonic() + 30  # a bound: each worker drains (no delay here) and stops
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in workers)


def test_memquota_is_refused_with_several_workers(tmp_path):
    config = tmp_path / "policy.yaml"
    config.write_text(MEMQUOTA)
    result = subprocess.run([sys.executable, "-m", "policy.cli", "serve", "--config", str(config),
                             "--listen", f"127.0.0.1:{free_port()}", "--workers", "2"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "memquota counts in one process" in result.stderr and "local-counts" in result.stderr
    assert "supervising" not in result.stdout


@pytest.mark.parametrize("address, why", [("unix:{tmp}/p.sock", "Unix socket cannot be shared"),
                                          ("127.0.0.1:0", "port 0")])
def test_addresses_several_workers_cannot_share_are_refused(tmp_path, address, why):
    config = tmp_path / "policy.yaml"
    config.write_text(ALLOW_INTERNAL)
    result = subprocess.run([sys.executable, "-m", "policy.cli", "serve", "--config", str(config),
                             "--listen", address.format(tmp=tmp_path), "--workers", "2"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert why in result.stderr


async def test_a_reload_adding_memquota_is_rejected_under_several_workers(tmp_path):
    config = tmp_path / "policy.yaml"
    config.write_text(ALLOW_INTERNAL)
    service = PolicyService(config, watch_interval=0, workers=2)
    await service.start()
    try:
        config.write_text(MEMQUOTA)
        assert await service.reload(force=True) is False
        assert service.reload_status.ok is False
        assert any("memquota counts in one process" in error for error in service.reload_status.errors)
        assert service.snapshot.generation == 1  # the last good config keeps serving
        assert "local-counts" not in service.snapshot.handlers
    finally:
        await service.stop()


async def test_one_worker_keeps_memquota(tmp_path):
    config = tmp_path / "policy.yaml"
    config.write_text(MEMQUOTA)
    service = PolicyService(config, watch_interval=0)
    await service.start()
    try:
        assert any(entry.adapter.name == "memquota" for entry in service.snapshot.handlers.values())
    finally:
        await service.stop()
