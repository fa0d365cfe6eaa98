"""Stopping under load: SIGTERM answers every call already sent; health says NOT_SERVING while draining."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from policy.testing import native_check
from policy.v1 import policy_pb2_grpc
from tests.serve_process import serve_on_free_port

ROOT = Path(__file__).resolve().parents[2]

DENY_ADMIN = """
handlers:
  - {name: deny, adapter: denier, params: {status: {code: 7, message: admin is closed}}}
instances:
  - {name: nothing, template: checknothing, params: {}}
rules:
  - {name: admin, match: request.path == "/admin", actions: [{handler: deny, instances: [nothing]}]}
"""


def _path(i: int) -> str:
    return "/admin" if i % 3 == 0 else f"/p/{i}"


@pytest.mark.slow
@pytest.mark.parametrize("after", ["quiet", "quiet-again", "keeps-sending"])
def test_sigterm_under_load_answers_every_call_sent_before_it(tmp_path, after):
    config = tmp_path / "policy.yaml"
    config.write_text(DENY_ADMIN)
    proc, address = serve_on_free_port(
        [sys.executable, "-m", "policy.cli", "serve", "--config", str(config),
         "--log-level", "warning", "--watch-interval", "0"],  # drain delay 0: tests/conftest.py
        cwd=ROOT, stderr=subprocess.PIPE, env={**os.environ, "POLICY_DISABLE_PLUGIN_AUTOLOAD": "1"})
    try:

        async def load() -> list:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = policy_pb2_grpc.PolicyStub(channel)
                await native_check(stub, {"request.path": "/warm"})
                calls = [asyncio.ensure_future(native_check(stub, {"request.path": _path(i)})) for i in range(60)]
                for _ in range(5):  # let the client write every request before the signal
                    await asyncio.sleep(0)
                proc.send_signal(signal.SIGTERM)
                later = []
                if after == "keeps-sending":  # clients that ignore NOT_SERVING: their late calls may fail
                    for i in range(200):
                        later.append(asyncio.ensure_future(native_check(stub, {"request.path": _path(i)})))
                        await asyncio.sleep(0.005)
                results = await asyncio.gather(*calls, return_exceptions=True)
                await asyncio.gather(*later, return_exceptions=True)
                return results

        results = asyncio.run(load())
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lost = Counter(r.code().name for r in results if isinstance(r, grpc.aio.AioRpcError))
    assert not lost, f"calls sent before SIGTERM were lost: {dict(lost)}"
    codes = [r.precondition.status.code for r in results]
    assert codes == [7 if _path(i) == "/admin" else 0 for i in range(60)]   # 0 wrong answers
    assert proc.returncode == 0, err


async def test_drain_says_not_serving_and_still_answers_during_the_delay(policy_config, policy_server_factory):
    running = await policy_server_factory(policy_config(DENY_ADMIN))
    health = health_pb2_grpc.HealthStub(running.channel())
    watch = health.Watch(health_pb2.HealthCheckRequest(service="policy.v1.Policy"))
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    draining = asyncio.create_task(running.server.drain(delay=3600, grace=1))
    changed = await asyncio.wait_for(watch.read(), 10)
    assert changed.status == health_pb2.HealthCheckResponse.NOT_SERVING
    overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert overall.status == health_pb2.HealthCheckResponse.NOT_SERVING
    # Still accepting during the drain delay: new calls are answered, and answered right.
    assert (await native_check(running.native(), {"request.path": "/admin"})).precondition.status.code == 7
    assert (await native_check(running.native(), {"request.path": "/x"})).precondition.status.code == 0
    watch.cancel()
    draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await draining
