"""Mixer documents read as Mixer read them: quota overrides, empty expressions, elided rules, build errors.

Each test names the Mixer behaviour (and source) it holds us to.
"""

from __future__ import annotations

import pytest

from policy.attributes import AttributeBag
from policy.sdk import Code, ConfigError, QuotaArgs
from tests.mixer.conftest import FIXTURES

API = "apiVersion: config.istio.io/v1alpha2"


def visit(destination: str, source: str = "10.0.0.1") -> AttributeBag:
    return AttributeBag({"destination.labels": {"app": destination}, "request.headers": {"x-forwarded-for": source}})


async def charge(dispatcher, bag, quota):
    decision = await dispatcher.check(bag, {quota: QuotaArgs(quota, 1)})
    return decision.quotas[quota]


@pytest.mark.parametrize("fixture, quota", [
    ("bookinfo-productpage-ratelimit.yaml", "requestcountquota"),
    ("bookinfo-productpage-ratelimit-crd.yaml", "requestcount"),
])
async def test_bookinfo_productpage_override_windows_apply(load_mixer, mixer_clock, fixture, quota):
    """samples/bookinfo/policy: productpage gets 2 per 5s (the override's own validDuration), not per 1s."""
    dispatcher = await load_mixer(FIXTURES / fixture)
    bag = visit("productpage")
    assert [(await charge(dispatcher, bag, quota)).granted_amount for _ in range(3)] == [1, 1, 0]
    mixer_clock.advance(1.5)                      # the quota's own 1s window would have passed
    assert (await charge(dispatcher, bag, quota)).granted_amount == 0
    mixer_clock.advance(3.6)                      # 5.1s after the first grants: they left the window
    assert (await charge(dispatcher, bag, quota)).granted_amount == 1
    other = visit("details")
    assert [(await charge(dispatcher, other, quota)).granted_amount for _ in range(20)] == [1] * 20


async def test_bookinfo_ratings_overrides_first_match_wins(load_mixer):
    """samples/bookinfo/policy/mixer-rule-ratings-ratelimit.yaml: reviews→ratings 1/s, other→ratings 100/s."""
    dispatcher = await load_mixer(FIXTURES / "bookinfo-ratings-ratelimit.yaml")
    from_reviews = AttributeBag({"destination.labels": {"app": "ratings"}, "source.labels": {"app": "reviews"}})
    assert [(await charge(dispatcher, from_reviews, "requestcountquota")).granted_amount
            for _ in range(2)] == [1, 0]
    from_other = AttributeBag({"destination.labels": {"app": "ratings"}, "source.labels": {"app": "web"}})
    assert (await charge(dispatcher, from_other, "requestcountquota")).granted_amount == 1


def _authorization(groups: str) -> str:
    return f"""
{API}
kind: authorization
metadata: {{name: requestcontext, namespace: istio-system}}
spec:
  subject:
    user: source.principal | ""
    groups: {groups}
  action:
    namespace: destination.namespace | "default"
    service: destination.service.host | ""
    method: request.method | ""
    path: request.path | ""
---
{API}
kind: denier
metadata: {{name: deny, namespace: istio-system}}
spec: {{status: {{code: 7}}}}
---
{API}
kind: rule
metadata: {{name: r, namespace: istio-system}}
spec:
  actions: [{{handler: deny.denier, instances: [requestcontext.authorization]}}]
"""


async def test_an_empty_expression_leaves_the_field_unset(load_mixer):
    """Istio 1.0's RBAC task wrote ``groups: ""``; Mixer's generated builders skip an empty expression."""
    dispatcher = await load_mixer(_authorization('""'))
    builder = dispatcher.snapshot.instances["requestcontext.authorization.istio-system"]
    instance = builder.build(AttributeBag({"source.principal": "alice"}))
    assert instance.subject.user == "alice"
    assert not instance.subject.groups
    written = (await load_mixer(_authorization("'\"g\"'"))).snapshot
    built = written.instances["requestcontext.authorization.istio-system"].build(AttributeBag({}))
    assert built.subject.user == ""
    assert built.subject.groups == "g"


def test_an_empty_value_in_a_map_is_still_an_error(parse_mixer):
    """Mixer compiles every dimension expression: an empty one does not compile."""
    with pytest.raises(ConfigError) as info:
        parse_mixer(f"""
{API}
kind: quota
metadata: {{name: q, namespace: istio-system}}
spec: {{dimensions: {{a: ""}}}}
""")
    assert [i.field for i in info.value.issues] == ["spec.dimensions.a"]


def test_a_rule_without_actions_is_elided_with_a_warning(parse_mixer):
    """Mixer's routing builder skips a rule with neither actions nor header operations."""
    model = parse_mixer(f"""
{API}
kind: rule
metadata: {{name: nothing, namespace: istio-system}}
spec: {{match: "true", actions: []}}
""")
    assert [(w.document, w.field) for w in model.warnings if "does nothing" in w.message] == [
        ("rule/nothing.istio-system", "spec.actions")]
    assert [len(r.actions) for r in model.rules] == [0]  # kept as a rule that does nothing


QUOTA_HANDLER = f"""
{API}
kind: {{kind}}
metadata: {{{{name: limits, namespace: istio-system}}}}
spec:
  redisServerUrl: 127.0.0.1:6379
  quotas:
  - {{{{name: known.quota.istio-system, maxAmount: 1, validDuration: 1s}}}}
---
{API}
kind: quota
metadata: {{{{name: known, namespace: istio-system}}}}
spec: {{{{dimensions: {{{{a: '"x"'}}}}}}}}
---
{API}
kind: quota
metadata: {{{{name: unknown, namespace: istio-system}}}}
spec: {{{{dimensions: {{{{a: '"x"'}}}}}}}}
---
{API}
kind: rule
metadata: {{{{name: r, namespace: istio-system}}}}
spec:
  actions: [{{{{handler: limits.{{kind}}, instances: [known.quota, unknown.quota]}}}}]
"""


@pytest.mark.parametrize("kind", ["memquota", "redisquota"])
def test_a_routed_quota_without_a_limit_is_a_config_error(parse_mixer, kind):
    """memquota.go / redisquota.go: 'did not find limit defined for quota' when the handler is built."""
    text = QUOTA_HANDLER.format(kind=kind)
    if kind == "memquota":
        text = text.replace("  redisServerUrl: 127.0.0.1:6379\n", "")
    with pytest.raises(ConfigError) as info:
        parse_mixer(text)
    issues = [(i.document, i.field, i.message) for i in info.value.issues]
    assert len(issues) == 1, issues
    document, field, message = issues[0]
    assert "limits" in document and field == "spec.quotas"
    assert "unknown.quota.istio-system" in message and "rule r" in message
    assert "known.quota.istio-system" in message  # the quotas that are defined are listed


async def test_the_denier_grants_no_quota(load_mixer):
    """denier.go HandleQuota: amount 0, valid duration 0."""
    dispatcher = await load_mixer(f"""
{API}
kind: denier
metadata: {{name: deny, namespace: istio-system}}
spec: {{status: {{code: 7}}}}
---
{API}
kind: quota
metadata: {{name: requests, namespace: istio-system}}
spec: {{dimensions: {{a: '"x"'}}}}
---
{API}
kind: rule
metadata: {{name: r, namespace: istio-system}}
spec:
  actions: [{{handler: deny.denier, instances: [requests.quota]}}]
""")
    result = await charge(dispatcher, AttributeBag({}), "requests")
    assert result.granted_amount == 0 and result.valid_duration == 0.0
    assert result.status.code is Code.RESOURCE_EXHAUSTED


async def test_failures_are_joined_and_empty_header_values_skipped(load_mixer):
    """session.go: the first failure's code, 'h1:msg1, h2:msg2'; a header value evaluating to "" is skipped."""
    dispatcher = await load_mixer(f"""
{API}
kind: denier
metadata: {{name: first, namespace: istio-system}}
spec: {{status: {{code: 7, message: nope}}}}
---
{API}
kind: denier
metadata: {{name: second, namespace: istio-system}}
spec: {{status: {{code: 16, message: who}}}}
---
{API}
kind: checknothing
metadata: {{name: nothing, namespace: istio-system}}
spec: {{}}
---
{API}
kind: rule
metadata: {{name: deny, namespace: istio-system}}
spec:
  match: request.path == "/deny"
  actions:
  - {{handler: first.denier, instances: [nothing.checknothing]}}
  - {{handler: second.denier, instances: [nothing.checknothing]}}
---
{API}
kind: rule
metadata: {{name: headers, namespace: istio-system}}
spec:
  requestHeaderOperations:
  - {{name: x-user, values: ['request.headers["x-user"] | ""']}}
  - {{name: x-fixed, values: ['"on"']}}
""")
    denied = await dispatcher.check(AttributeBag({"request.path": "/deny"}))
    assert denied.status.code is Code.PERMISSION_DENIED
    assert denied.status.message == "first.denier.istio-system: nope, second.denier.istio-system: who"
    allowed = await dispatcher.check(AttributeBag({"request.path": "/", "request.headers": {}}))
    assert [(h.name, h.value) for h in allowed.request_headers] == [("x-fixed", "on")]
    named = await dispatcher.check(AttributeBag({"request.path": "/", "request.headers": {"x-user": "al"}}))
    assert [(h.name, h.value) for h in named.request_headers] == [("x-user", "al"), ("x-fixed", "on")]


def test_a_header_value_of_another_type_than_string_is_refused(parse_mixer):
    """routing/builder.go: 'header operation value expression is not of string type'."""
    with pytest.raises(ConfigError) as info:
        parse_mixer(f"""
{API}
kind: rule
metadata: {{name: h, namespace: istio-system}}
spec:
  requestHeaderOperations: [{{name: x-size, values: [request.size]}}]
""")
    assert [(i.document, i.field) for i in info.value.issues] == [
        ("rule/h.istio-system", "spec.requestHeaderOperations[0].values[0]")]
    assert "expected STRING" in info.value.issues[0].message


async def test_each_header_value_is_its_own_operation(load_mixer):
    """session.go: one HeaderOperation per value (a REPLACE's last value wins at the proxy)."""
    dispatcher = await load_mixer(f"""
{API}
kind: rule
metadata: {{name: h, namespace: istio-system}}
spec:
  responseHeaderOperations: [{{name: x-tag, values: ['"a"', '""', '"b"'], operation: APPEND}}]
""")
    decision = await dispatcher.check(AttributeBag({}))
    assert [(h.name, h.value) for h in decision.response_headers] == [("x-tag", "a"), ("x-tag", "b")]


def test_only_the_rule_routing_the_unlimited_quota_is_named(parse_mixer):
    """The rule named is the one that routes the quota without a limit, not one routing a similar name."""
    text = QUOTA_HANDLER.format(kind="memquota").replace("  redisServerUrl: 127.0.0.1:6379\n", "")
    text = text.replace("instances: [known.quota, unknown.quota]", "instances: [unknown.quota]") + f"""
---
{API}
kind: rule
metadata: {{name: other, namespace: istio-system}}
spec:
  actions: [{{handler: limits.memquota, instances: [known.quota]}}]
"""
    with pytest.raises(ConfigError) as info:
        parse_mixer(text)
    (issue,) = info.value.issues
    assert issue.message.endswith("(routed here by rule r.rule.istio-system)"), issue.message
