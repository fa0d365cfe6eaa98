"""envoyproxy/ratelimit's integration-test scripts, as the requests Envoy sends, against its example configs.

The examples are loaded unchanged through our config loader (with a memquota handler on a
FakeClock, so the scripts' ``sleep 60`` is a clock step); data/integration_cases.yaml lists
each script's requests and the answers the script asserts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2

from adapters.memquota import MemQuotaAdapter
from policy.config import parse_config
from tests.ratelimit.conftest import should_rate_limit
from policy.testing import FakeClock

HERE = Path(__file__).parent
SCRIPTS = yaml.safe_load((HERE / "data" / "integration_cases.yaml").read_text())
POLICY = "settings:\n  rateLimit: {handler: counts}\nhandlers:\n  - {name: counts, adapter: memquota, params: {quotas: []}}\n"


@pytest.fixture
def example_config(tmp_path, policy_host_factory):
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "policy.yaml").write_text(POLICY)
    for path in (HERE / "fixtures" / "examples").glob("*.yaml"):
        shutil.copy(path, directory / path.name)
    model = parse_config(directory, policy_host_factory())
    assert model.rate_limit is not None and set(model.rate_limit.domains) == {"mongo_cps", "rl"}
    return model.rate_limit


@pytest.mark.parametrize("script", SCRIPTS, ids=[s["script"].rsplit("/", 1)[-1] for s in SCRIPTS])
async def test_integration_script(script, example_config, build):
    clock = FakeClock()
    handler = build(MemQuotaAdapter, {"quotas": []}, clock.clock)
    for index, step in enumerate(script["steps"]):
        if "advance" in step:
            clock.advance(step["advance"])
            continue
        request = rls_pb2.RateLimitRequest(domain="rl")
        hits = step.get("hits", [None] * len(step["descriptors"]))
        for entries, own in zip(step["descriptors"], hits):
            d = request.descriptors.add()
            d.entries.extend(ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries)
            if own is not None:
                d.hits_addend.value = own
        response = await should_rate_limit(example_config, handler, request)
        limited = response.overall_code == rls_pb2.RateLimitResponse.OVER_LIMIT
        assert limited == step["limited"], f"{script['script']} request {index}: {response}"
