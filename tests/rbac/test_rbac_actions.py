"""AuthorizationPolicy actions, evaluation order, scoping, selectors, dry-run and audit, through a real config.

Each scenario loads an rbac handler with the policies, decides one request through the
PolicyService, and checks the decision and its reason (Istio's rule name
``ns[..]-policy[..]-rule[i]`` or ``no ALLOW policy matched``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from policy import Code
from tests.rbac.conftest import attrs, reason


def policy(name: str, spec: str, namespace: str = "foo", annotations: str = "") -> str:
    """One AuthorizationPolicy document."""
    meta = f"{{name: {name}, namespace: {namespace}{', annotations: ' + annotations if annotations else ''}}}"
    return f"---\napiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {meta}\nspec: {spec}\n"


GET_INFO = "{rules: [{to: [{operation: {methods: [GET], paths: ['/info*']}}]}]}"


@dataclass
class Scenario:
    """A table row: policies, the request, the expected outcome and a part of the reason."""

    id: str
    policies: str
    request: dict[str, Any]
    allowed: bool
    reason: str
    params: str = "{}"


SCENARIOS = [
    Scenario("no policy allows", "", attrs(request__path="/x"), True,
             "no ALLOW policy applies to the workload"),
    Scenario("empty spec allows nothing", policy("nothing", "{}"), attrs(request__path="/x"), False,
             "RBAC: access denied: no ALLOW policy matched"),
    Scenario("rules [{}] allows all", policy("all", "{rules: [{}]}"), attrs(request__path="/x"), True,
             "allowed by ns[foo]-policy[all]-rule[0]"),
    Scenario("matching ALLOW names its rule", policy("get", GET_INFO),
             attrs(request__method="GET", request__path="/info/1"), True, "allowed by ns[foo]-policy[get]-rule[0]"),
    Scenario("ALLOW policy present but not matching denies", policy("get", GET_INFO),
             attrs(request__method="POST", request__path="/info/1"), False, "no ALLOW policy matched"),
    Scenario("the second rule's index is reported",
             policy("two", "{rules: [{to: [{operation: {methods: [PUT]}}]}, {to: [{operation: {methods: [GET]}}]}]}"),
             attrs(request__method="GET"), True, "ns[foo]-policy[two]-rule[1]"),
    Scenario("the first matching policy in document order is reported",
             policy("first", "{rules: [{to: [{operation: {methods: [GET]}}]}]}")
             + policy("second", "{rules: [{}]}"),
             attrs(request__method="GET"), True, "ns[foo]-policy[first]-rule[0]"),
    Scenario("DENY beats a matching ALLOW",
             policy("allow-all", "{rules: [{}]}")
             + policy("deny-delete", "{action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]}"),
             attrs(request__method="DELETE"), False, "access denied by ns[foo]-policy[deny-delete]-rule[0]"),
    Scenario("a DENY that does not match, no ALLOW: allowed",
             policy("deny-delete", "{action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]}"),
             attrs(request__method="GET"), True, "no ALLOW policy applies"),
    Scenario("DENY with rules [{}] denies everything", policy("deny-all", "{action: DENY, rules: [{}]}"),
             attrs(request__method="GET"), False, "access denied by ns[foo]-policy[deny-all]-rule[0]"),
    Scenario("AUDIT never changes the outcome", policy("audit", "{action: AUDIT, rules: [{}]}"),
             attrs(request__method="GET"), True, "audited by ns[foo]-policy[audit]-rule[0]"),
    Scenario("a policy of another namespace does not apply", policy("nothing", "{}", namespace="bar"),
             attrs(request__path="/x"), True, "no ALLOW policy applies"),
    Scenario("a root-namespace policy applies to every namespace",
             policy("mesh-nothing", "{}", namespace="istio-system"),
             attrs(request__path="/x"), False, "no ALLOW policy matched"),
    Scenario("rootNamespace param moves the mesh-wide namespace",
             policy("mesh-nothing", "{}", namespace="istio-config"),
             attrs(request__path="/x"), False, "no ALLOW policy matched", params="{rootNamespace: istio-config}"),
    Scenario("istio-system is an ordinary namespace when the root is elsewhere",
             policy("mesh-nothing", "{}", namespace="istio-system"),
             attrs(request__path="/x"), True, "no ALLOW policy applies", params="{rootNamespace: istio-config}"),
    Scenario("a root ALLOW and a namespace ALLOW are additive",
             policy("root", "{rules: [{to: [{operation: {methods: [GET]}}]}]}", namespace="istio-system")
             + policy("local", "{rules: [{to: [{operation: {methods: [POST]}}]}]}"),
             attrs(request__method="POST"), True, "ns[foo]-policy[local]-rule[0]"),
    Scenario("selector matching the destination labels applies",
             policy("httpbin", "{selector: {matchLabels: {app: httpbin}}}"),
             attrs(destination__labels={"app": "httpbin", "version": "v1"}), False, "no ALLOW policy matched"),
    Scenario("selector not matching does not apply",
             policy("httpbin", "{selector: {matchLabels: {app: httpbin, version: v2}}}"),
             attrs(destination__labels={"app": "httpbin", "version": "v1"}), True, "no ALLOW policy applies"),
    Scenario("selector without labels on the request does not apply",
             policy("httpbin", "{selector: {matchLabels: {app: httpbin}}}"), attrs(), True,
             "no ALLOW policy applies"),
    Scenario("a root selector applies to matching workloads of every namespace",
             policy("v1", "{selector: {matchLabels: {version: v1}}, action: DENY, rules: [{}]}",
                    namespace="istio-system"),
             attrs(destination__namespace="bar", destination__labels={"version": "v1"}), False,
             "ns[istio-system]-policy[v1]-rule[0]"),
    Scenario("dry-run DENY is not enforced",
             policy("deny-all", "{action: DENY, rules: [{}]}", annotations="{istio.io/dry-run: 'true'}"),
             attrs(), True, "dry-run DENY policies: would be denied by ns[foo]-policy[deny-all]-rule[0]"),
    Scenario("dry-run ALLOW does not enable deny-by-default",
             policy("allow-get", "{rules: [{to: [{operation: {methods: [GET]}}]}]}",
                    annotations="{istio.io/dry-run: 'true'}"),
             attrs(request__method="POST"), True, "dry-run ALLOW policies: would be denied"),
    Scenario("dry-run annotation 'false' is enforced",
             policy("deny-all", "{action: DENY, rules: [{}]}", annotations="{istio.io/dry-run: 'false'}"),
             attrs(), False, "access denied by ns[foo]-policy[deny-all]-rule[0]"),
    Scenario("a nil rule matches nothing", policy("nil-rule", "{rules: [null]}"), attrs(), False,
             "no ALLOW policy matched"),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
async def test_scenario(decide, scenario):
    decision = await decide(scenario.policies, scenario.request, scenario.params)
    assert decision.allowed is scenario.allowed, reason(decision)
    assert scenario.reason in reason(decision)
    if not scenario.allowed:
        assert decision.code == Code.PERMISSION_DENIED
        assert decision.message.startswith("authz: RBAC: access denied")


async def test_dry_run_results_go_to_metadata_and_counters(decide, policy_config, policy_service_factory):
    from tests.rbac.conftest import config_text

    text = config_text(
        policy("deny-post", "{action: DENY, rules: [{to: [{operation: {methods: [POST]}}]}]}",
               annotations="{istio.io/dry-run: 'true'}")
        + policy("allow-get", "{rules: [{to: [{operation: {methods: [GET]}}]}]}",
                 annotations="{istio.io/dry-run: 'true'}"))
    service = await policy_service_factory(policy_config(text))
    post = await service.check(attrs(request__method="POST"))
    assert post.allowed
    assert post.metadata["istio_dry_run_deny_shadow_engine_result"] == "denied"
    assert post.metadata["istio_dry_run_deny_shadow_effective_policy_id"] == "ns[foo]-policy[deny-post]-rule[0]"
    assert post.metadata["istio_dry_run_allow_shadow_engine_result"] == "denied"
    get = await service.check(attrs(request__method="GET"))
    assert get.allowed
    assert get.metadata["istio_dry_run_deny_shadow_engine_result"] == "allowed"
    assert get.metadata["istio_dry_run_allow_shadow_effective_policy_id"] == "ns[foo]-policy[allow-get]-rule[0]"
    stats = service.snapshot.handlers["authz"].handler.stats
    assert stats["istio_dry_run_deny_shadow_denied"] == 1 and stats["istio_dry_run_deny_shadow_allowed"] == 1
    assert stats["istio_dry_run_allow_shadow_allowed"] == 1 and stats["allowed"] == 2


async def test_audit_marks_the_decision(decide):
    decision = await decide(policy("audit-post", "{action: AUDIT, rules: [{to: [{operation: {methods: [POST]}}]}]}"),
                            attrs(request__method="POST"))
    assert decision.allowed
    assert decision.metadata == {"access_log_hint": True, "audit_policy": "ns[foo]-policy[audit-post]-rule[0]"}
    unaudited = await decide(policy("audit-post", "{action: AUDIT, rules: [{to: [{operation: {methods: [POST]}}]}]}"),
                             attrs(request__method="GET"))
    assert "access_log_hint" not in unaudited.metadata


async def test_decisions_are_cached_on_the_instance_reads(policy_config, policy_service_factory):
    from tests.rbac.conftest import config_text

    text = config_text(policy("get", GET_INFO), params="{validDuration: 30s, validUseCount: 5}")
    service = await policy_service_factory(policy_config(text))
    first = await service.check(attrs(request__method="GET", request__path="/info", request__id="a"))
    again = await service.check(attrs(request__method="GET", request__path="/info", request__id="b"))
    other = await service.check(attrs(request__method="GET", request__path="/other", request__id="c"))
    assert (first.cache_hit, again.cache_hit, other.cache_hit) == (False, True, False)
    assert first.valid_duration == 30 and first.valid_use_count == 5
    assert again.allowed and not other.allowed
