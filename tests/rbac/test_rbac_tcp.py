"""TCP checks: rules that use HTTP-only fields, as Istio builds them for the TCP (network) filter.

Istio's ``model.Generate(forTCP=true)`` (pilot/pkg/security/authz/model/model.go,
generator.go): hosts, methods, paths, requestPrincipals and the ``request.*`` keys are
"HTTP only". For DENY, AUDIT and CUSTOM the HTTP-only values are ignored ("for a DENY
rule, missing attributes are treated as matches", authorization_policy.proto), for ALLOW
the whole rule is skipped. A check is TCP when ``context.protocol`` is ``tcp`` (the
ext_authz server sets it for a CheckRequest without an HTTP request).
"""

from __future__ import annotations

import pytest

from policy import Code
from tests.envoy.conftest import VIA, authz, check_request
from tests.rbac.conftest import attrs, config_text, reason

SLEEP = "cluster.local/ns/default/sa/sleep"


def policy(action: str, rule: str, name: str = "p") -> str:
    return ("apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: {name}, namespace: foo}}\nspec: {{action: {action}, rules: [{rule}]}}\n")


def tcp(**given):
    return attrs(context__protocol="tcp", destination__port=8080, **given)


def http(**given):
    return attrs(destination__port=8080, request__method="GET", request__path="/x", **given)


HTTP_ONLY_OPERATIONS = [
    "{methods: [POST]}", "{notMethods: [GET]}", "{paths: [/admin]}", "{notPaths: [/x]}",
    "{hosts: [a.example]}", "{notHosts: ['*']}",
]
HTTP_ONLY_SOURCES = ["{requestPrincipals: ['*']}", "{notRequestPrincipals: ['*']}"]
HTTP_ONLY_WHEN = ["{key: 'request.headers[x-a]', values: [b]}", "{key: request.auth.principal, values: ['*']}",
                  "{key: 'request.auth.claims[g]', notValues: [x]}", "{key: request.auth.audiences, values: [a]}",
                  "{key: request.auth.presenter, values: [a]}"]
HTTP_ONLY_RULES = ([f"{{to: [{{operation: {o}}}]}}" for o in HTTP_ONLY_OPERATIONS]
                   + [f"{{from: [{{source: {s}}}]}}" for s in HTTP_ONLY_SOURCES]
                   + [f"{{when: [{w}]}}" for w in HTTP_ONLY_WHEN])


@pytest.mark.parametrize("rule", HTTP_ONLY_RULES)
async def test_deny_rule_with_http_only_fields_matches_tcp(decide, rule):
    decision = await decide(policy("DENY", rule), tcp())
    assert not decision.allowed
    assert "ns[foo]-policy[p]-rule[0]" in reason(decision)


@pytest.mark.parametrize("rule", HTTP_ONLY_RULES)
async def test_allow_rule_with_http_only_fields_is_dropped_for_tcp(decide, rule):
    decision = await decide(policy("ALLOW", rule), tcp())
    assert not decision.allowed
    assert "no ALLOW policy matched" in reason(decision)


async def test_deny_keeps_its_tcp_fields(decide):
    # The proto's example: DENY POST on port 8080 denies all TCP traffic on 8080, and only that.
    rule = "{to: [{operation: {methods: [POST], ports: ['8080']}}]}"
    assert not (await decide(policy("DENY", rule), tcp())).allowed
    assert (await decide(policy("DENY", rule), attrs(context__protocol="tcp", destination__port=9090))).allowed
    # HTTP: the method still counts.
    assert (await decide(policy("DENY", rule), http())).allowed


async def test_deny_with_principal_and_path_needs_the_principal_on_tcp(decide):
    rule = f"{{from: [{{source: {{principals: ['{SLEEP}']}}}}], to: [{{operation: {{paths: [/admin]}}}}]}}"
    assert not (await decide(policy("DENY", rule), tcp(source__principal=SLEEP))).allowed
    assert (await decide(policy("DENY", rule), tcp(source__principal="cluster.local/ns/x/sa/y"))).allowed


async def test_allow_without_http_fields_still_allows_tcp(decide):
    rule = f"{{from: [{{source: {{principals: ['{SLEEP}']}}}}], to: [{{operation: {{ports: ['8080']}}}}]}}"
    assert (await decide(policy("ALLOW", rule), tcp(source__principal=SLEEP))).allowed


async def test_allow_drops_only_the_rule_with_http_fields(decide):
    rules = "{to: [{operation: {methods: [GET]}}]}, {to: [{operation: {ports: ['8080']}}]}"
    decision = await decide(policy("ALLOW", rules), tcp())
    assert decision.allowed
    assert "rule[1]" in reason(decision)


async def test_http_requests_are_unchanged(decide):
    assert (await decide(policy("DENY", "{to: [{operation: {methods: [POST]}}]}"), http())).allowed
    assert (await decide(policy("ALLOW", "{to: [{operation: {methods: [GET]}}]}"), http())).allowed


async def test_audit_rule_with_http_fields_audits_tcp(decide):
    decision = await decide(policy("AUDIT", "{to: [{operation: {paths: [/admin]}}]}"), tcp())
    assert decision.allowed
    assert "audited by ns[foo]-policy[p]-rule[0]" in reason(decision)


TCP_POLICIES = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-post, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: [POST], ports: ['9000']}}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: shop}
spec:
  rules:
  - to: [{operation: {methods: [GET]}}]
  - to: [{operation: {ports: ['8080']}}]
"""


@VIA
async def test_ext_authz_tcp_check_request(policy_config, policy_server_factory, via):
    """A CheckRequest without an HTTP request is a TCP check (context.protocol tcp)."""
    running = await policy_server_factory(policy_config(config_text(TCP_POLICIES)))
    stub = authz(running, via)
    dest = "spiffe://cluster.local/ns/shop/sa/books"
    denied = await stub.Check(check_request(http=False, destination=("10.4.5.6", 9000), destination_principal=dest))
    assert denied.status.code == Code.PERMISSION_DENIED
    assert "ns[shop]-policy[deny-post]-rule[0]" in denied.status.message
    # The ALLOW rule with methods is skipped for TCP; the port rule allows 8080 only.
    allowed = await stub.Check(check_request(http=False, destination=("10.4.5.6", 8080), destination_principal=dest))
    assert allowed.status.code == Code.OK
    other = await stub.Check(check_request(http=False, destination=("10.4.5.6", 7070), destination_principal=dest))
    assert other.status.code == Code.PERMISSION_DENIED
    # The same port over HTTP: POST on 9000 is denied, GET on 9000 is allowed by rule 0.
    get = await stub.Check(check_request(destination=("10.4.5.6", 9000), destination_principal=dest))
    assert get.status.code == Code.OK
