"""AuthorizationPolicies enforced for Envoy: CheckRequests through the real ext_authz server and Envoy's stub.

The CheckRequests carry what an Istio sidecar sends (SPIFFE principal, JWT payload
in jwt_authn metadata, destination labels); the server translates them into
attributes and the rbac handler decides on the requestcontext instance.
"""

from __future__ import annotations

import pytest

from policy import Code
from tests.envoy.conftest import VIA, authz, check_request
from tests.rbac.conftest import config_text

POLICIES = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-mallory, namespace: istio-system}
spec:
  action: DENY
  rules:
  - when: [{key: 'request.headers[x-user]', values: [mallory]}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: books, namespace: shop}
spec:
  selector: {matchLabels: {app: books}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/frontend]}}]
    to: [{operation: {methods: [GET], paths: ['/api/books/{*}']}}]
  - from: [{source: {requestPrincipals: ['https://issuer.example/*']}}]
    to: [{operation: {methods: [POST], paths: [/api/books]}}]
    when: [{key: 'request.auth.claims[role]', values: [editor]}]
"""

FRONTEND = "spiffe://cluster.local/ns/shop/sa/frontend"
BOOKS = {"app": "books", "version": "v1"}


def books_request(**kw):
    kw.setdefault("destination_labels", BOOKS)
    kw.setdefault("destination_principal", "spiffe://cluster.local/ns/shop/sa/books")
    return check_request(**kw)


@VIA
async def test_ext_authz_decisions(policy_config, policy_server_factory, via):
    # destination.namespace comes from the destination's SPIFFE principal.
    running = await policy_server_factory(policy_config(config_text(POLICIES)))
    stub = authz(running, via)

    ok = await stub.Check(books_request(source_principal=FRONTEND, path="/api/books/12"))
    assert ok.status.code == Code.OK
    assert ok.HasField("ok_response")

    wrong_path = await stub.Check(books_request(source_principal=FRONTEND, path="/api/books/12/pages"))
    assert wrong_path.status.code == Code.PERMISSION_DENIED
    assert wrong_path.denied_response.status.code == 403
    assert "RBAC: access denied: no ALLOW policy matched" in wrong_path.status.message

    editor = await stub.Check(books_request(method="POST", path="/api/books",
                                            jwt={"iss": "https://issuer.example", "sub": "ann", "role": "editor"}))
    assert editor.status.code == Code.OK
    reader = await stub.Check(books_request(method="POST", path="/api/books",
                                            jwt={"iss": "https://issuer.example", "sub": "bob", "role": "reader"}))
    assert reader.status.code == Code.PERMISSION_DENIED

    mallory = await stub.Check(books_request(source_principal=FRONTEND, path="/api/books/12",
                                             headers={"x-user": "mallory"}))
    assert mallory.status.code == Code.PERMISSION_DENIED
    assert "access denied by ns[istio-system]-policy[deny-mallory]-rule[0]" in mallory.status.message
    assert mallory.denied_response.body.startswith("PERMISSION_DENIED:")

    other_workload = await stub.Check(books_request(destination_labels={"app": "reviews"}, path="/anything"))
    assert other_workload.status.code == Code.OK


@pytest.mark.parametrize("dry_run", ["true", "false"])
async def test_dry_run_decision_reaches_envoy_metadata(policy_config, policy_server_factory, dry_run):
    policy = f"""
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {{name: deny-get, namespace: istio-system, annotations: {{istio.io/dry-run: '{dry_run}'}}}}
spec: {{action: DENY, rules: [{{to: [{{operation: {{methods: [GET]}}}}]}}]}}
"""
    running = await policy_server_factory(policy_config(config_text(policy)))
    response = await authz(running, "tcp").Check(check_request(method="GET"))
    fields = response.dynamic_metadata.fields
    if dry_run == "true":
        assert response.status.code == Code.OK
        assert fields["istio_dry_run_deny_shadow_engine_result"].string_value == "denied"
        assert fields["istio_dry_run_deny_shadow_effective_policy_id"].string_value == \
            "ns[istio-system]-policy[deny-get]-rule[0]"
    else:
        assert response.status.code == Code.PERMISSION_DENIED
        assert "istio_dry_run_deny_shadow_engine_result" not in fields


async def test_requests_differing_in_unread_headers_share_a_cached_decision(policy_config, policy_server_factory):
    """Envoy sends a new x-request-id each time; rbac reads only the headers its policies name."""
    policy = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: users, namespace: istio-system}
spec:
  rules: [{when: [{key: 'request.headers[x-user]', values: [alice]}]}]
"""
    running = await policy_server_factory(policy_config(config_text(policy)))
    stub = authz(running, "tcp")
    cache = running.service.dispatcher.cache
    first = await stub.Check(check_request(request_id="r1", headers={"x-user": "alice", "x-trace": "a"}))
    second = await stub.Check(check_request(request_id="r2", headers={"x-user": "alice", "x-trace": "b"}))
    other = await stub.Check(check_request(request_id="r3", headers={"x-user": "bob"}))
    assert (first.status.code, second.status.code, other.status.code) == (Code.OK, Code.OK, Code.PERMISSION_DENIED)
    assert cache.stats.hits == 1
    decision = await running.service.check({"request.headers": {"x-user": "alice", "x-other": "1"}})
    headers_read = {r.map_key for r in decision.referenced if r.name == "request.headers"}
    assert "x-user" in headers_read and None not in headers_read and "x-other" not in headers_read
