"""Exactly the limit, never more: 64 concurrent callers through two server processes sharing one Redis."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import grpc
import pytest

from policy.testing.harness import native_check
from policy.v1 import policy_pb2_grpc
from tests.quota.servers import policy_processes

pytestmark = pytest.mark.slow

CONFIG = """
handlers:
  - name: shared
    adapter: redisquota
    params:
      redisServerUrl: {url}
      connectionPoolSize: 8
      quotas:
        - {{name: fixed, maxAmount: 100, validDuration: 1h, rateLimitAlgorithm: FIXED_WINDOW}}
        - {{name: rolling, maxAmount: 100, validDuration: 1h, bucketDuration: 1m,
           rateLimitAlgorithm: ROLLING_WINDOW}}
        - {{name: retried, maxAmount: 100, validDuration: 1h}}
instances:
  - {{name: fixed, template: quota, params: {{dimensions: {{run: '"{run}"'}}}}}}
  - {{name: rolling, template: quota, params: {{dimensions: {{run: '"{run}"'}}}}}}
  - {{name: retried, template: quota, params: {{dimensions: {{run: '"{run}"'}}}}}}
rules:
  - {{name: charge, actions: [{{handler: shared, instances: [fixed, rolling, retried]}}]}}
"""


@pytest.fixture
async def stubs(redis_server, tmp_path, unique):
    if 3600 - time.time() % 3600 < 30:   # do not straddle an hour's boundary (fixed windows align to it)
        await asyncio.sleep(3600 - time.time() % 3600 + 0.1)
    config = tmp_path / "policy.yaml"
    config.write_text(CONFIG.format(url=redis_server.url, run=unique("run")))
    with policy_processes(config, 2) as addresses:
        channels = [grpc.aio.insecure_channel(a) for a in addresses]
        yield [policy_pb2_grpc.PolicyStub(c) for c in channels]
        for channel in channels:
            await channel.close()


async def run_callers(stubs, quota, calls_each, amount=1, best_effort=False, dedup=None):
    """64 callers, half on each process; returns every (dedup id, granted, code)."""
    out = []

    async def caller(index):
        stub = stubs[index % 2]
        for call in range(calls_each):
            dedup_id = dedup(index, call) if dedup else ""
            response = await native_check(stub, {"request.path": "/"}, {quota: amount}, dedup_id)
            result = response.quotas[quota]
            out.append((dedup_id, result.granted_amount, result.status.code))

    await asyncio.gather(*(caller(i) for i in range(64)))
    return out


@pytest.mark.parametrize("quota", ["fixed", "rolling"])
async def test_64_callers_on_two_processes_are_granted_exactly_the_limit(stubs, quota):
    results = await run_callers(stubs, quota, calls_each=4)
    assert sum(granted for _, granted, _ in results) == 100
    assert sum(1 for _, _, code in results if code == 8) == 64 * 4 - 100   # the rest RESOURCE_EXHAUSTED
    # Best effort fills the limit exactly too: nothing is left, nothing is over-granted.
    again = await run_callers(stubs, quota, calls_each=2, amount=3, best_effort=True)
    assert sum(granted for _, granted, _ in again) == 0


async def test_retries_with_the_same_deduplication_id_are_charged_once(stubs):
    # Each request id is sent twice (the retry goes to the other process) at the same time as others.
    results = await run_callers(stubs, "retried", calls_each=4, dedup=lambda i, c: f"req-{i}-{c // 2}")
    by_id = defaultdict(list)
    for dedup_id, granted, _ in results:
        by_id[dedup_id].append(granted)
    assert len(by_id) == 128 and all(len(v) == 2 for v in by_id.values())
    assert all(a == b for a, b in by_id.values())                  # a retry answers what the first got
    assert sum(1 for a, _ in by_id.values() if a == 1) == 100      # 100 distinct requests charged, no more
