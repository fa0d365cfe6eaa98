"""Unix sockets: never taken over from a live server, only our own removed, created with a set mode."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from policy.servers.app import PolicyServer
from policy.servers.unix_socket import SocketInUseError
from policy.testing import native_check

ROOT = Path(__file__).resolve().parents[2]
ALLOW = "rules: []\n"



async def _server(policy_host_factory, config: Path, path: Path, **kw) -> PolicyServer:
    from policy.runtime.service import PolicyService

    service = PolicyService(config, policy_host_factory(), watch_interval=0)
    server = PolicyServer(service, [f"unix:{path}"], **kw)
    await server.start()
    return server


async def test_a_second_server_refuses_a_live_socket_and_the_first_keeps_it(policy_config, policy_host_factory,
                                                                           tmp_path):
    config = policy_config(ALLOW)
    path = tmp_path / "p.sock"
    first = await _server(policy_host_factory, config, path)
    try:
        inode = os.lstat(path).st_ino
        with pytest.raises(SocketInUseError, match="another server is listening"):
            await _server(policy_host_factory, config, path)
        assert os.lstat(path).st_ino == inode
        import grpc

        from policy.v1 import policy_pb2_grpc

        async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
            response = await native_check(policy_pb2_grpc.PolicyStub(channel), {"request.path": "/"})
        assert response.precondition.status.code == 0
    finally:
        await first.stop(grace=0)
    assert not path.exists()  # our own socket is removed on stop
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".policy-")] == []


async def test_stop_does_not_remove_a_socket_that_replaced_ours(policy_config, policy_host_factory, tmp_path):
    config = policy_config(ALLOW)
    path = tmp_path / "p.sock"
    first = await _server(policy_host_factory, config, path)
    os.unlink(path)                       # an operator (or another tool) replaced the socket
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(str(path))
        other.listen()
        await first.stop(grace=0)
        assert path.is_socket()           # the successor's socket survives our stop


async def test_a_stale_socket_is_replaced(policy_config, policy_host_factory, tmp_path):
    path = tmp_path / "p.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))              # bound, never listening: like a killed server's leftover
    server = await _server(policy_host_factory, policy_config(ALLOW), path)
    try:
        assert path.is_socket()
    finally:
        await server.stop(grace=0)


async def test_a_regular_file_at_the_path_is_not_deleted(policy_config, policy_host_factory, tmp_path):
    path = tmp_path / "p.sock"
    path.write_text("precious")
    with pytest.raises(SocketInUseError, match="not a socket"):
        await _server(policy_host_factory, policy_config(ALLOW), path)
    assert path.read_text() == "precious"


@pytest.mark.parametrize("mode", [0o660, 0o600])
async def test_the_socket_gets_the_configured_mode(policy_config, policy_host_factory, tmp_path, mode):
    path = tmp_path / "p.sock"
    server = await _server(policy_host_factory, policy_config(ALLOW), path, socket_mode=mode)
    try:
        assert stat.S_IMODE(os.lstat(path).st_mode) == mode
    finally:
        await server.stop(grace=0)


def test_serve_on_an_unbindable_socket_is_a_clean_error(tmp_path):
    config = tmp_path / "ok.yaml"
    config.write_text(ALLOW)
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run([sys.executable, "-m", "policy.cli", "serve", "--config", str(config),
                             "--listen", f"unix:{blocker}/p.sock", "--drain-delay", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{blocker}/p.sock" in result.stderr


def test_serve_refuses_a_live_socket_with_exit_2(tmp_path):
    config = tmp_path / "ok.yaml"
    config.write_text(ALLOW)
    path = tmp_path / "p.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        result = subprocess.run([sys.executable, "-m", "policy.cli", "serve", "--config", str(config),
                                 "--listen", f"unix:{path}", "--drain-delay", "0"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert path.is_socket()
    assert result.returncode == 2, result.stderr
    assert "another server is listening" in result.stderr and "Traceback" not in result.stderr
