"""Combining check results: deny beats allow, minimum cacheability, explicit cacheability."""

from __future__ import annotations

from policy.runtime.decision import combine
from policy.sdk import CheckResult, Code


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
