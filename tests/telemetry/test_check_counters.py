"""The check counters: one count per check by rule set, summed per API and per rule when read, bounded."""

from __future__ import annotations

from policy.runtime import telemetry as telemetry_module
from policy.runtime.decision import Decision
from policy.runtime.telemetry import Telemetry
from policy.sdk import Code, Status


def test_counts_per_api_and_rule_are_summed_from_rule_sets():
    t = Telemetry()
    allowed = Decision(rules=("a", "b"))
    denied = Decision(status=Status(Code.PERMISSION_DENIED, "no"), rules=("b",))
    for _ in range(3):
        t.observe_check("native", 0.001, allowed)
    t.observe_check("ext_authz", 0.001, denied)
    t.observe("ratelimit", 0.001, "OK", rules=("b",))
    assert t.decisions == {("native", "OK"): 3, ("ext_authz", "PERMISSION_DENIED"): 1, ("ratelimit", "OK"): 1}
    assert t.rule_decisions == {("a", "OK"): 3, ("b", "OK"): 4, ("b", "PERMISSION_DENIED"): 1}
    assert t.latency("native").counts and sum(t.latency("native").counts) == 3


def test_distinct_rule_sets_are_bounded_and_no_count_is_lost(monkeypatch):
    monkeypatch.setattr(telemetry_module, "_MAX_RULE_SETS", 8)
    t = Telemetry()
    for i in range(50):  # requests pick which rules match: 50 distinct sets
        t.observe_check("native", 0.001, Decision(rules=(f"r{i}", "common")))
    assert len(t._checks) <= 8
    assert t.decisions == {("native", "OK"): 50}
    rules = t.rule_decisions
    assert rules[("common", "OK")] == 50 and all(rules[(f"r{i}", "OK")] == 1 for i in range(50))
