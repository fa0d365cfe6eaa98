"""Runner of cases.yaml: Mixer's redisquota tests (redisquota_test.go, redisquota_integration_test.go) as data.

Counters live in the real redis-server the suite starts; each case uses its own key prefix.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.redisquota import RedisQuotaAdapter
from policy import BuildContext, Code, ParamsError, Quota, QuotaArgs, parse_params
from policy.attributes import AttributeBag
from policy.testing import FakeClock
from tests.quota.redis_procs import RedisServer

TABLE = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text())
_prefixes = itertools.count()


def _id(case: dict[str, Any]) -> str:
    return f"{case['source']}::{case['test']}"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for this module."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.mark.parametrize("case", TABLE["handle_quota"], ids=_id)
async def test_redisquota_handle_quota_case(case: dict[str, Any], redis_server: RedisServer, tmp_path: Path) -> None:
    clock = FakeClock()
    start = clock.wall
    raw = {"redisServerUrl": redis_server.url, "quotas": [case["quota"]], "keyPrefix": f"t{next(_prefixes)}:"}
    params = parse_params(RedisQuotaAdapter.Params, raw)
    assert list(RedisQuotaAdapter.validate(params)) == []
    handler = RedisQuotaAdapter.build(params, BuildContext(handler="h", config_dir=tmp_path, clock=clock.clock))
    handler.limiter.clock_ms = lambda: round(clock.wall * 1000)
    name = case["quota"]["name"]
    try:
        for index, (best_effort, amount, at, granted, valid, dedup) in enumerate(case["requests"]):
            assert start + at >= clock.wall, f"row {index}: time goes back"
            clock.advance(start + at - clock.wall)
            result = await handler.quota(Quota(name, case.get("dims", {})),
                                         QuotaArgs(name, amount, best_effort, dedup))
            where = f"row {index} {[best_effort, amount, at, granted, valid, dedup]}: got {result}"
            assert result.granted_amount == granted, where
            assert result.valid_duration == pytest.approx(valid, abs=1e-3), where
            assert result.ok == (granted > 0), where
    finally:
        await handler.close()


@pytest.mark.parametrize("case", TABLE["validate"], ids=_id)
def test_redisquota_validate_case(case: dict[str, Any]) -> None:
    try:
        params = parse_params(RedisQuotaAdapter.Params, case["params"])
    except ParamsError as exc:
        fields = [e.field for e in exc.errors]
    else:
        fields = [e.field for e in RedisQuotaAdapter.validate(params)]
        fields += [e.field for e in RedisQuotaAdapter.validate_instances(params, case.get("routed", {}))]
    assert sorted(fields) == sorted(case["fields"])


_INTEGRATION = TABLE["integration"]


@pytest.mark.parametrize("algorithm", _INTEGRATION["algorithms"])
@pytest.mark.parametrize("case", _INTEGRATION["cases"], ids=lambda c: f"redisquota_integration_test.go::{c['test']}")
async def test_redisquota_integration_case(case: dict[str, Any], algorithm: str, redis_server: RedisServer,
                                           load_mixer: Any) -> None:
    config = (_INTEGRATION["config"].replace("__ALGORITHM__", algorithm)
              .replace("__REDIS__", redis_server.url).replace("__PREFIX__", f"i{next(_prefixes)}:"))
    dispatcher = await load_mixer(config)
    args = QuotaArgs("requestCount", case["amount"], case["best_effort"])
    decision = await dispatcher.check(AttributeBag(case["attrs"]), {"requestCount": args})
    result = decision.quotas["requestCount"]
    assert result.status.code is Code[case["code"]], result
    assert result.granted_amount == case["granted"], result
    assert result.valid_duration == pytest.approx(case["valid"], abs=0.05), result
    if case["code"] != "OK":
        assert result.status.message.startswith("handler.redisquota.istio-system: "), result
