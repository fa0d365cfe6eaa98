"""memquota: Mixer's semantics on a fake clock, concurrency on a real one, and through a real server."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from adapters.memquota import MemQuotaAdapter
from policy import Code, ParamsError, Quota, QuotaArgs, parse_params
from policy.testing import FakeClock
from policy.testing.harness import native_check


def fixed(max_amount=3, window="1s", **kw):
    return {"quotas": [{"name": "q", "maxAmount": max_amount, "validDuration": window,
                        "rateLimitAlgorithm": "FIXED_WINDOW", **kw}]}


def rolling(max_amount=3, window="1500ms", bucket="500ms", **kw):
    return {"quotas": [{"name": "q", "maxAmount": max_amount, "validDuration": window,
                        "bucketDuration": bucket, **kw}]}


def ask(handler, amount=1, dims=None, **kw):
    return handler.quota(Quota("q", dims or {}), QuotaArgs("q", amount, **kw))


def test_fixed_window_grants_the_limit_and_resets_at_the_aligned_boundary(build, fake_clock):
    fake_clock.advance(0.7)  # 0.3s before a whole second: the window ends there, not 1s from now
    handler = build(MemQuotaAdapter, fixed(), fake_clock.clock)
    results = [ask(handler) for _ in range(4)]
    assert [r.granted_amount for r in results] == [1, 1, 1, 0]
    assert results[3].status.code == Code.RESOURCE_EXHAUSTED
    assert results[3].valid_duration == 0.0  # Mixer: a denial carries no valid duration
    assert results[2].valid_duration == pytest.approx(0.3)  # a grant: until the aligned window ends
    assert results[2].remaining == 0 and results[0].remaining == 2 and results[0].limit == 3
    fake_clock.advance(0.29)
    assert ask(handler).granted_amount == 0
    fake_clock.advance(0.02)
    assert ask(handler).granted_amount == 1


def test_rolling_window_frees_capacity_bucket_by_bucket_below_a_second(build, fake_clock):
    handler = build(MemQuotaAdapter, rolling(max_amount=3), fake_clock.clock)
    assert ask(handler, 2).granted_amount == 2          # bucket 0
    fake_clock.advance(0.5)
    assert ask(handler).granted_amount == 1             # bucket 1
    denied = ask(handler)
    assert denied.status.code == Code.RESOURCE_EXHAUSTED
    assert denied.valid_duration == 0.0                 # Mixer: a denial carries no valid duration
    fake_clock.advance(0.99)
    assert ask(handler).granted_amount == 0
    fake_clock.advance(0.02)                            # bucket 0 (2 units) left the window
    assert ask(handler, 2).granted_amount == 2
    assert ask(handler).granted_amount == 0


def test_best_effort_grants_what_is_left_and_a_denied_call_is_not_charged(build, fake_clock):
    handler = build(MemQuotaAdapter, fixed(max_amount=5), fake_clock.clock)
    assert ask(handler, 4).granted_amount == 4
    assert ask(handler, 3).granted_amount == 0          # does not fit, charges nothing
    partial = ask(handler, 3, best_effort=True)
    assert partial.granted_amount == 1 and partial.ok and partial.remaining == 0
    assert ask(handler, 1, best_effort=True).granted_amount == 0


def test_overrides_first_match_wins_and_counters_are_per_dimensions(build, fake_clock):
    raw = fixed(max_amount=2, overrides=[
        {"dimensions": {"user": "vip"}, "maxAmount": 4},
        {"dimensions": {"user": "vip", "tier": "gold"}, "maxAmount": 100},
        {"dimensions": {"port": "8080"}, "maxAmount": 1},
    ])
    handler = build(MemQuotaAdapter, raw, fake_clock.clock)
    vip = {"user": "vip", "tier": "gold"}
    assert sum(ask(handler, dims=vip).granted_amount for _ in range(10)) == 4
    assert sum(ask(handler, dims={"user": "bob"}).granted_amount for _ in range(10)) == 2
    assert sum(ask(handler, dims={"user": "eve"}).granted_amount for _ in range(10)) == 2
    assert sum(ask(handler, dims={"port": 8080}).granted_amount for _ in range(10)) == 1


def test_a_retried_call_is_not_charged_twice_and_the_id_is_remembered_long_enough(build, fake_clock):
    raw = {**fixed(max_amount=3, window="1m"), "minDeduplicationDuration": "2s"}
    handler = build(MemQuotaAdapter, raw, fake_clock.clock)
    first = ask(handler, 2, deduplication_id="r1")
    again = ask(handler, 2, deduplication_id="r1")
    assert first.granted_amount == again.granted_amount == 2 and again.ok
    assert ask(handler, 1, deduplication_id="r2").granted_amount == 1   # only 2 were charged for r1
    assert ask(handler, 1, deduplication_id="r3").granted_amount == 0
    fake_clock.advance(1.9)
    assert ask(handler, 2, deduplication_id="r1").granted_amount == 2   # still remembered
    fake_clock.advance(2.2)
    fake_clock.advance(2.1)                                             # > 2 x minDeduplicationDuration
    assert ask(handler, 2, deduplication_id="r1").granted_amount == 0   # forgotten: a new charge, which fails


def test_allocation_mode_holds_a_total_and_a_negative_amount_releases(build, fake_clock):
    handler = build(MemQuotaAdapter, {"quotas": [{"name": "q", "maxAmount": 3}]}, fake_clock.clock)
    assert ask(handler, 2).granted_amount == 2
    assert ask(handler, 2).granted_amount == 0
    fake_clock.advance(3600)                      # no window: still in use an hour later
    assert ask(handler, 2).granted_amount == 0
    released = ask(handler, -1)
    assert released.granted_amount == 1 and released.ok
    assert ask(handler, 2).granted_amount == 2
    assert ask(handler, -10).granted_amount == 3  # releases what is in use, no more
    assert ask(handler, 3).granted_amount == 3


def test_release_on_a_windowed_quota_frees_the_newest_grants(build, fake_clock):
    handler = build(MemQuotaAdapter, rolling(max_amount=3), fake_clock.clock)
    assert ask(handler, 2).granted_amount == 2
    fake_clock.advance(0.5)
    assert ask(handler).granted_amount == 1
    released = ask(handler, -2)
    assert released.ok and released.granted_amount == 2 and released.valid_duration == 0.0
    assert ask(handler, 2).granted_amount == 2      # 1 of the first grant and the last are freed
    fake_clock.advance(1.01)                        # the first grant's bucket (1 left) left the window
    assert ask(handler, 2).granted_amount == 0
    assert ask(handler, 1).granted_amount == 1
    assert ask(handler, -5).granted_amount == 3     # releases at most what is in use


def test_release_on_a_fixed_window_and_when_nothing_is_in_use(build, fake_clock):
    handler = build(MemQuotaAdapter, fixed(), fake_clock.clock)
    assert ask(handler, -1).granted_amount == 0
    assert ask(handler, 3).granted_amount == 3
    assert ask(handler, -1).granted_amount == 1
    assert ask(handler).granted_amount == 1


def test_unknown_quota_answers_failed_precondition_and_mixer_names_match_the_short_name(build, fake_clock):
    handler = build(MemQuotaAdapter, fixed(), fake_clock.clock)
    result = handler.quota(Quota("other", {}), QuotaArgs("other", 1))
    assert result.status.code == Code.FAILED_PRECONDITION and "other" in result.status.message
    assert handler.quota(Quota("q.instance.istio-system", {}), QuotaArgs("q", 1)).granted_amount == 1


def test_idle_counters_expire_and_memory_is_bounded(build, fake_clock):
    handler = build(MemQuotaAdapter, {**fixed(window="1s"), "maxCounters": 50}, fake_clock.clock)
    for i in range(50):
        assert ask(handler, dims={"ip": f"10.0.0.{i}"}).granted_amount == 1
    refused = ask(handler, dims={"ip": "10.0.1.1"})
    assert refused.status.code == Code.UNAVAILABLE and "maxCounters" in refused.status.message
    fake_clock.advance(1.5)
    assert ask(handler, dims={"ip": "10.0.1.1"}).granted_amount == 1   # the old window's counters were swept
    assert len(handler.limiter) == 1


@pytest.mark.parametrize("raw, field", [
    ({"quotas": [{"name": "q", "maxAmount": -1}]}, "quotas[0].maxAmount"),
    ({"quotas": [{"name": "q", "maxAmount": 1, "validDuration": "1s", "bucketDuration": "300ms"}]},
     "quotas[0].bucketDuration"),
    ({"quotas": [{"name": "q", "maxAmount": 1}, {"name": "q", "maxAmount": 2}]}, "quotas[1].name"),
    ({"quotas": [{"name": "q", "maxAmount": 1, "validDuration": "1s", "bucketDuration": "250ms",
                  "overrides": [{"dimensions": {"a": "b"}, "maxAmount": 1, "validDuration": "1100ms"}]}]},
     "quotas[0].bucketDuration"),
    ({"quotas": [{"name": "q", "maxAmount": 1,
                  "overrides": [{"dimensions": {"a": "b"}, "maxAmount": 1, "validDuration": "1us"}]}]},
     "quotas[0].overrides[0].validDuration"),
    ({"minDeduplicationDuration": "0s"}, "minDeduplicationDuration"),
])
def test_bad_params_name_the_field(raw, field):
    params = parse_params(MemQuotaAdapter.Params, raw)
    errors = list(MemQuotaAdapter.validate(params))
    assert [e.field for e in errors] == [field], errors


def test_unknown_param_is_rejected():
    with pytest.raises(ParamsError, match="unknown field"):
        parse_params(MemQuotaAdapter.Params, {"quotas": [{"name": "q", "maxAmount": 1, "window": "1s"}]})


@pytest.mark.parametrize("algorithm", ["FIXED_WINDOW", "ROLLING_WINDOW"])
async def test_64_tasks_and_64_threads_are_granted_exactly_the_limit(build, algorithm):
    raw = {"quotas": [{"name": "q", "maxAmount": 100, "validDuration": "1h", "rateLimitAlgorithm": algorithm}]}
    handler = build(MemQuotaAdapter, raw, clock=FakeClock().clock)  # time stands still: no window ends mid-test

    async def caller(n):
        granted = 0
        for _ in range(n):
            granted += ask(handler, dims={"k": "tasks"}).granted_amount
            await asyncio.sleep(0)
        return granted

    results = await asyncio.gather(*(caller(5) for _ in range(64)))
    assert sum(results) == 100

    barrier = threading.Barrier(64)

    def thread_caller(_):
        barrier.wait()
        return sum(ask(handler, dims={"k": "threads"}).granted_amount for _ in range(5))

    with ThreadPoolExecutor(64) as pool:
        assert sum(pool.map(thread_caller, range(64))) == 100


MEMQUOTA_CONFIG = """
handlers:
  - name: per-user
    adapter: memquota
    params:
      quotas:
        - name: requests
          maxAmount: 3
          validDuration: 1h
          rateLimitAlgorithm: FIXED_WINDOW
          overrides:
            - {dimensions: {user: vip}, maxAmount: 5}
instances:
  - name: requests
    template: quota
    params:
      dimensions:
        user: request.headers["x-user"] | "anonymous"
rules:
  - name: charge
    actions: [{handler: per-user, instances: [requests]}]
"""


async def test_native_check_charges_memquota_through_a_real_server(policy_config, policy_server_factory):
    running = await policy_server_factory(policy_config(MEMQUOTA_CONFIG))
    stub = running.native()
    if 3600 - time.time() % 3600 < 5:
        await asyncio.sleep(3600 - time.time() % 3600 + 0.1)

    async def charge(user, dedup=""):
        response = await native_check(stub, {"request.headers": {"x-user": user}}, {"requests": 1}, dedup)
        return response.quotas["requests"]

    alice = [await charge("alice") for _ in range(4)]
    assert [q.granted_amount for q in alice] == [1, 1, 1, 0]
    assert alice[3].status.code == Code.RESOURCE_EXHAUSTED and "per-user" in alice[3].status.message
    vip = [await charge("vip", dedup=f"d{i // 2}") for i in range(12)]   # each id sent twice
    assert [q.granted_amount for q in vip] == [1] * 10 + [0, 0]           # 5 distinct ids charged
