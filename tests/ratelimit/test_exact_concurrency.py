"""Exact counting under 64 concurrent callers spread over two `policy serve` processes sharing one Redis
(a single server, then a 3-node Cluster): each value's limit is granted exactly, every call is counted."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.serve_process import serve_on_free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
OK = rls_pb2.RateLimitResponse.OK
LIMIT, VALUES, CALLERS, CALLS = 50, 8, 64, 8
_runs = itertools.count()

RLS = f"""
domain: exact
descriptors:
  - key: user
    rate_limit: {{unit: year, requests_per_unit: {LIMIT}}}
  - key: tenant
    rate_limit: {{unit: year, requests_per_unit: {LIMIT * 2}}}
"""


def write_config(tmp_path: Path, url: str, cluster: bool) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    prefix = f"exact{next(_runs)}x{uuid.uuid4().hex[:12]}:"
    (directory / "policy.yaml").write_text(f"""
settings:
  rateLimit: {{handler: shared}}
handlers:
  - name: shared
    adapter: redisquota
    params: {{redisServerUrl: "{url}", cluster: {str(cluster).lower()}, keyPrefix: "{prefix}", timeout: 10s, quotas: []}}
""")
    (directory / "rls.yaml").write_text(RLS)
    return directory


def start(directory: Path) -> tuple[subprocess.Popen, str]:
    return serve_on_free_port([sys.executable, "-m", "policy.cli", "serve", "--config", str(directory),
                               "--log-level", "warning"], timeout=60, cwd=ROOT, stderr=subprocess.PIPE)


def request(user: int, hits: int | None = None) -> rls_pb2.RateLimitRequest:
    descriptors = [ratelimit_pb2.RateLimitDescriptor(entries=[ratelimit_pb2.RateLimitDescriptor.Entry(
                       key="user", value=f"u{user}")]),
                   ratelimit_pb2.RateLimitDescriptor(entries=[ratelimit_pb2.RateLimitDescriptor.Entry(
                       key="tenant", value=f"t{user % 2}")])]
    if hits is not None:
        for d in descriptors:
            d.hits_addend.value = hits
    return rls_pb2.RateLimitRequest(domain="exact", descriptors=descriptors)


async def hammer(addresses: list[str]) -> tuple[list[int], list[int], list[int]]:
    channels = [grpc.aio.insecure_channel(a) for a in addresses]
    stubs = [rls_pb2_grpc.RateLimitServiceStub(c) for c in channels]
    user_ok = [0] * VALUES
    tenant_ok = [0, 0]

    async def caller(index: int) -> None:
        stub = stubs[index % len(stubs)]
        for call in range(CALLS):
            user = (index + call) % VALUES
            answer = await stub.ShouldRateLimit(request(user), timeout=30)
            user_ok[user] += answer.statuses[0].code == OK
            tenant_ok[user % 2] += answer.statuses[1].code == OK

    try:
        await asyncio.gather(*(caller(i) for i in range(CALLERS)))
        counts = []
        for user in range(VALUES):
            read = await stubs[0].ShouldRateLimit(request(user, hits=0), timeout=30)
            counts.append(read.statuses[0].code)
        return user_ok, tenant_ok, counts
    finally:
        for channel in channels:
            await channel.close()


async def run_two_processes(tmp_path: Path, url: str, cluster: bool) -> None:
    directory = write_config(tmp_path, url, cluster)
    procs = []
    try:
        for _ in range(2):
            procs.append(start(directory))
        user_ok, tenant_ok, reads = await hammer([address for _, address in procs])
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    per_user = CALLERS * CALLS // VALUES              # 64 calls per user value
    assert per_user > LIMIT
    assert user_ok == [LIMIT] * VALUES                # exactly the limit, per value, across both processes
    assert tenant_ok == [LIMIT * 2] * 2               # 256 calls per tenant, 100 within
    assert reads == [rls_pb2.RateLimitResponse.OVER_LIMIT] * VALUES   # every call counted: a read stays over


async def test_exact_on_one_redis_from_two_processes(tmp_path, redis_server):
    await run_two_processes(tmp_path, redis_server.url, cluster=False)


async def test_exact_on_a_redis_cluster_from_two_processes(tmp_path, redis_cluster):
    await run_two_processes(tmp_path, redis_cluster.url, cluster=True)
