"""envoyproxy/ratelimit's limiter and service tests as data (data/service_cases.yaml), on real counters.

Each case runs twice: on memquota with a FakeClock at the case's ``now`` (resets compared
exactly) and on redisquota against the real redis-server (every unit run as YEAR, since
Redis keeps its own time: windows cannot roll over mid-case, resets are not compared).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf import json_format

from adapters.memquota import MemQuotaAdapter
from adapters.redisquota import RedisQuotaAdapter
from policy.config.ratelimit.limits import RateLimitSettings, compile_rate_limit
from tests.ratelimit.conftest import should_rate_limit
from policy.config.ratelimit.stats import STATS
from policy.sdk import parse_params
from policy.testing import FakeClock

HERE = Path(__file__).parent
CASES = yaml.safe_load((HERE / "data" / "service_cases.yaml").read_text())
CODES = {"OK": rls_pb2.RateLimitResponse.OK, "OVER_LIMIT": rls_pb2.RateLimitResponse.OVER_LIMIT}
UNITS = rls_pb2.RateLimitResponse.RateLimit.Unit
_prefixes = itertools.count()


def _yearly(node):
    """The case's config with every unit as YEAR (for Redis, which keeps its own time)."""
    if isinstance(node, dict):
        return {k: ("year" if k == "unit" else _yearly(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_yearly(v) for v in node]
    return node


def build_config(case, yearly):
    raw = {"handler": "counts", **case.get("settings", {})}
    settings = parse_params(RateLimitSettings, raw)
    errors = []
    data = _yearly(case["config"]) if yearly else case["config"]
    config = compile_rate_limit([("case", data)], settings, lambda *e: errors.append(e))
    assert errors == [], errors
    return config


def make_request(spec, hits=0, domain=None, default_domain="d", yearly=False):
    descriptors = []
    for item in spec:
        entries, own_hits = item[0], item[1]
        d = ratelimit_pb2.RateLimitDescriptor(
            entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries])
        if own_hits is not None:
            d.hits_addend.value = own_hits
        if len(item) > 2:
            d.limit.requests_per_unit, d.limit.unit = item[2][0], UNITS.Value("YEAR" if yearly else item[2][1])
        descriptors.append(d)
    return rls_pb2.RateLimitRequest(domain=domain or default_domain, descriptors=descriptors, hits_addend=hits)


def snapshot(config):
    return {key: dict(zip(STATS, row)) for key, row in config.statistics.by_key.items()}


async def run_case(case, handler, yearly):
    config = build_config(case, yearly)
    domain = case["config"]["domain"]
    for index, step in enumerate(case["steps"]):
        where = f"{case['source']} step {index}"
        if "prime" in step:
            entries, hits = step["prime"]
            await should_rate_limit(config, handler, make_request([[entries, hits]], default_domain=domain))
            continue
        spec = step["request"]
        before = snapshot(config)
        response = await should_rate_limit(config, handler, make_request(
            spec["descriptors"], spec.get("hits", 0), spec.get("domain"), domain, yearly))
        expect = step["expect"]
        assert response.overall_code == CODES[expect["code"]], where
        for i, want in enumerate(expect.get("statuses", [])):
            status = response.statuses[i]
            assert status.code == CODES[want["code"]], f"{where} status {i}"
            if "remaining" in want:
                assert status.limit_remaining == want["remaining"], f"{where} status {i} remaining"
            if "reset" in want and not yearly:
                assert status.duration_until_reset.seconds == want["reset"], f"{where} status {i} reset"
                assert status.duration_until_reset.nanos == 0
            if "limit" in want:
                if want["limit"] is None:
                    assert not status.HasField("current_limit"), f"{where} status {i}"
                else:
                    assert status.current_limit.requests_per_unit == want["limit"][0]
                    assert yearly or UNITS.Name(status.current_limit.unit) == want["limit"][1]
        if "headers" in expect and not yearly:
            assert {h.key: h.value for h in response.response_headers_to_add} == expect["headers"], where
        if "metadata" in expect:
            assert json_format.MessageToDict(response.dynamic_metadata) == expect["metadata"], where
        after = snapshot(config)
        for key, want in step.get("stats", {}).items():
            assert key in after, f"{where}: no statistics under {key} (have {sorted(after)})"
            old = before.get(key, dict.fromkeys(STATS, 0))
            delta = {name: after[key][name] - old[name] for name in STATS if after[key][name] != old[name]}
            assert delta == want, f"{where}: statistics of {key}"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_reference_case_on_memquota(case, build):
    clock = FakeClock(now=float(case.get("now", 1_700_000_000)))
    handler = build(MemQuotaAdapter, {"quotas": []}, clock.clock)
    await run_case(case, handler, yearly=False)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_reference_case_on_redis(case, build, redis_server):
    handler = build(RedisQuotaAdapter, {"redisServerUrl": redis_server.url, "quotas": [],
                                        "keyPrefix": f"rlcase{next(_prefixes)}:"})
    await handler.start()
    await run_case(case, handler, yearly=True)
