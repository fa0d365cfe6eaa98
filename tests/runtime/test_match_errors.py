"""A rule whose match expression raises: no match (Mixer) by default, counted per rule; DENY fails closed."""

from __future__ import annotations

import pytest

CONFIG = """
settings:
  matchErrors: {mode}
handlers:
  - name: nope
    adapter: denier
instances:
  - name: nothing
    template: checknothing
rules:
  - name: broken-ip
    match: ip(request.headers["x-ip"] | "10.0.0.9") == ip("10.0.0.1")
    actions:
      - handler: nope
        instances: [nothing]
"""

BAD = {"request.headers": {"x-ip": "not-an-ip"}}


async def test_a_raising_match_is_no_match_and_is_counted(policy_config, policy_service_factory):
    service = await policy_service_factory(policy_config(CONFIG.format(mode="NO_MATCH")))
    decision = await service.check({**BAD, "request.id": "1"})
    assert decision.allowed and decision.rules == ()
    assert service.telemetry.rule_match_errors == {"broken-ip": 1}
    denied = await service.check({"request.headers": {"x-ip": "10.0.0.1"}})
    assert not denied.allowed, "the rule itself still works"
    assert service.telemetry.rule_match_errors == {"broken-ip": 1}
    pytest.importorskip("prometheus_client")
    assert 'policy_rule_match_errors_total{rule="broken-ip"} 1.0' in service.telemetry.render()


async def test_deny_fails_closed_naming_the_rule_and_is_not_cached(policy_config, policy_service_factory):
    service = await policy_service_factory(policy_config(CONFIG.format(mode="DENY")))
    for request_id in ("1", "2"):
        decision = await service.check({**BAD, "request.id": request_id})
        assert decision.code.name == "INTERNAL" and not decision.cache_hit
        assert "broken-ip" in decision.message and "match expression failed" in decision.message
    assert service.telemetry.rule_match_errors == {"broken-ip": 2}
    assert (await service.check({"request.headers": {"x-ip": "10.0.0.2"}})).allowed


def test_an_unknown_mode_is_a_config_error_naming_the_field(policy_config, policy_host_factory):
    from policy import ConfigError
    from policy.config import load_config

    with pytest.raises(ConfigError, match="matchErrors"):
        load_config(policy_config(CONFIG.format(mode="MAYBE")), policy_host_factory())
