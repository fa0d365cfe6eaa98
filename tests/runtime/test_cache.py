"""The decision cache: keyed by read values, bounded, expiring by duration and use count."""

from __future__ import annotations

from policy.runtime.cache import DecisionCache


class FakeTimer:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_differing_only_in_unread_attributes_share_an_entry():
    cache = DecisionCache()
    first = {"source.ip": "10.0.0.1", "request.id": "a"}
    assert cache.store([("source.ip", None)], first, "allow", 10.0, None)
    assert cache.lookup({"source.ip": "10.0.0.1", "request.id": "b"}) == "allow"
    assert cache.lookup({"source.ip": "10.0.0.2", "request.id": "a"}) is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_absent_and_present_attributes_are_different_keys():
    cache = DecisionCache()
    cache.store([("source.user", None)], {}, "absent", 10.0, None)
    assert cache.lookup({}) == "absent"
    assert cache.lookup({"source.user": "bob"}) is None


def test_map_keys_are_keyed_one_by_one():
    cache = DecisionCache()
    reads = [("request.headers", "x-user")]
    cache.store(reads, {"request.headers": {"x-user": "alice", "x-req": "1"}}, "alice", 10.0, None)
    assert cache.lookup({"request.headers": {"x-user": "alice", "x-req": "2"}}) == "alice"
    assert cache.lookup({"request.headers": {"x-user": "bob"}}) is None
    assert cache.lookup({}) is None


def test_whole_map_reads_key_on_the_whole_map():
    cache = DecisionCache()
    cache.store([("request.headers", None)], {"request.headers": {"a": "1"}}, "v", 10.0, None)
    assert cache.lookup({"request.headers": {"a": "1"}}) == "v"
    assert cache.lookup({"request.headers": {"a": "1", "b": "2"}}) is None


def test_entries_expire_by_valid_duration():
    timer = FakeTimer()
    cache = DecisionCache(timer=timer)
    cache.store([("a", None)], {"a": 1}, "v", 5.0, None)
    timer.now += 4.9
    assert cache.lookup({"a": 1}) == "v"
    timer.now += 0.2
    assert cache.lookup({"a": 1}) is None


def test_entries_expire_by_use_count():
    cache = DecisionCache()
    cache.store([("a", None)], {"a": 1}, "v", 60.0, 2)
    assert cache.lookup({"a": 1}) == "v"
    assert cache.lookup({"a": 1}) == "v"
    assert cache.lookup({"a": 1}) is None


def test_undeclared_or_zero_duration_is_not_cached():
    cache = DecisionCache()
    assert not cache.store([("a", None)], {"a": 1}, "v", None, None)
    assert not cache.store([("a", None)], {"a": 1}, "v", 0.0, None)
    assert not cache.store([("a", None)], {"a": 1}, "v", 10.0, 0)
    assert cache.lookup({"a": 1}) is None
    assert cache.stats.uncacheable == 3


def test_bounded_with_evictions_counted():
    cache = DecisionCache(max_entries=3)
    for i in range(5):
        cache.store([("a", None)], {"a": i}, i, 60.0, None)
    assert len(cache) == 3
    assert cache.stats.evictions == 2
    assert cache.lookup({"a": 0}) is None
    assert cache.lookup({"a": 4}) == 4


def test_several_shapes_are_tried():
    cache = DecisionCache()
    cache.store([("a", None)], {"a": 1}, "by-a", 60.0, None)
    cache.store([("a", None), ("b", None)], {"a": 2, "b": 3}, "by-ab", 60.0, None)
    assert cache.lookup({"a": 1, "b": 9}) == "by-a"
    assert cache.lookup({"a": 2, "b": 3}) == "by-ab"
    assert cache.lookup({"a": 2, "b": 4}) is None
    assert cache.stats.shapes == 2


def test_shape_limit_stops_caching_new_shapes():
    cache = DecisionCache(max_shapes=1)
    assert cache.store([("a", None)], {"a": 1}, "x", 60.0, None)
    assert not cache.store([("b", None)], {"b": 1}, "y", 60.0, None)


def test_bounded_by_bytes_whatever_the_request_values_weigh():
    # Keys hold the request's own values: 3,000 distinct 64 KiB headers were 191 MiB under an
    # entry-count bound. The byte budget holds whatever the values weigh, least recently used first.
    budget = 4 * 1024 * 1024
    cache = DecisionCache(max_entries=100_000, max_bytes=budget)
    shape = [("request.headers", "x-big")]
    for i in range(3000):
        value = f"{i:08d}" + "x" * (64 * 1024)
        cache.store(shape, {"request.headers": {"x-big": value}}, "allow", 60.0, None)
    assert cache.bytes <= budget
    assert cache.snapshot_stats().bytes == cache.bytes
    assert 0 < len(cache) < 64  # about 4 MiB / 64 KiB
    assert cache.stats.evictions == 3000 - len(cache)
    newest = f"{2999:08d}" + "x" * (64 * 1024)
    assert cache.lookup({"request.headers": {"x-big": newest}}) == "allow"
    assert cache.lookup({"request.headers": {"x-big": f"{0:08d}" + "x" * (64 * 1024)}}) is None


def test_an_entry_larger_than_the_whole_budget_is_not_cached():
    cache = DecisionCache(max_bytes=16 * 1024)
    assert not cache.store([("a", None)], {"a": "x" * 32 * 1024}, "allow", 60.0, None)
    assert cache.store([("a", None)], {"a": "small"}, "allow", 60.0, None)
    assert (len(cache), cache.stats.too_large) == (1, 1)
    assert cache.lookup({"a": "x" * 32 * 1024}) is None


def test_bytes_count_the_decision_and_go_back_down_on_expiry():
    timer = FakeTimer()
    cache = DecisionCache(timer=timer)
    assert cache.bytes == 0
    cache.store([("a", None)], {"a": "x" * 10_000}, "allow", 10.0, None)
    assert cache.bytes > 10_000
    cache.store([("a", None)], {"a": "y"}, "allow", 10.0, 1)
    assert cache.lookup({"a": "y"}) == "allow"  # its one use: gone, and its bytes with it
    assert 10_000 < cache.bytes < 20_000
    timer.now += 11
    cache.store([("a", None)], {"a": "z"}, "allow", 10.0, None)  # storing drops what expired
    assert cache.bytes < 10_000
