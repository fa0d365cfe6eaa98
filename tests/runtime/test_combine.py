"""Combining check results: deny beats allow, minimum cacheability, explicit cacheability."""

from __future__ import annotations

from policy.runtime.decision import Decision, combine
from policy.sdk import OK, CheckResult, Code, Status


def test_no_results_take_the_defaults():
    status, duration, uses, deciding = combine([], 60.0, 1000)
    assert status.ok and duration == 60.0 and uses == 1000 and deciding is None


def test_first_denial_code_wins_and_every_failure_is_named():
    """Mixer's session.go: the first failure's code, every failure's handler and message joined."""
    results = [
        ("allow-h", CheckResult.allow(10, 5)),
        ("deny-1", CheckResult.deny("not listed", valid_duration=30)),
        ("deny-2", CheckResult.deny("also bad", Code.UNAUTHENTICATED, valid_duration=30)),
    ]
    status, duration, uses, deciding = combine(results, 60.0, 1000)
    assert status.code == Code.PERMISSION_DENIED
    assert status.message == "deny-1: not listed, deny-2: also bad"
    assert deciding is results[1][1]
    assert duration == 10 and uses == 5


def test_minimum_duration_and_use_count():
    status, duration, uses, _ = combine(
        [("a", CheckResult.allow(30, None)), ("b", CheckResult.allow(5, 100)), ("c", CheckResult.allow(60, 7))],
        60.0, 1000)
    assert status.ok and duration == 5 and uses == 7


def test_an_adapter_that_says_nothing_makes_the_decision_uncacheable():
    _, duration, _, _ = combine([("a", CheckResult.allow(30)), ("b", CheckResult.allow())], 60.0, 1000)
    assert duration is None


def test_fast_construction_equals_the_dataclass_constructor():
    fields = dict(status=Status(Code.PERMISSION_DENIED, "no"), valid_duration=5.0, valid_use_count=3,
                  rules=("r",), decision_id="id", generation=2, body="b", http_status=403)
    fast, slow = Decision.fast(**fields), Decision(**fields)
    assert fast == slow and repr(fast) == repr(slow)
    # mutable defaults are fresh per decision, as the constructor makes them
    assert fast.memo is not Decision.fast().memo and fast.quotas == {} and fast.metadata == {}


def test_a_single_result_combines_as_the_general_loop_does():
    for result in (CheckResult.allow(valid_duration=7.0, valid_use_count=4), CheckResult.allow(),
                   CheckResult(OK, valid_duration=float("inf")), CheckResult.deny("x", Code.NOT_FOUND, 1.0, 2)):
        single = combine([("h", result)], 60.0, 100)
        general = combine([("h", result), ("h", CheckResult(OK, valid_duration=float("inf")))], 60.0, 100)
        assert single[:3] == general[:3]
