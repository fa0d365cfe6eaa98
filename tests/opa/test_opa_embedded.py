"""The embedded engine: Rego v1, compile errors, undefined and malformed decisions, fail modes, caching, data."""

from __future__ import annotations

import json
import textwrap

import pytest

from policy import Code, ConfigError
from policy.config import load_config
from tests.opa.conftest import inline, message, opa_config

ALLOW_GET = """
package envoy.authz
import rego.v1
default allow := false
allow if input.attributes.request.http.method == "GET"
"""


def get(path: str = "/x", **more) -> dict:
    """A GET request; keyword names use ``__`` for dots (``request__headers``)."""
    return {"request.method": "GET", "request.path": path, **{k.replace("__", "."): v for k, v in more.items()}}


async def test_false_is_a_denial_not_undefined(opa_service):
    service = await opa_service(inline(ALLOW_GET))
    denied = await service.check({"request.method": "POST", "request.path": "/x"})
    assert denied.code == Code.PERMISSION_DENIED
    assert message(denied) == "OPA: denied by envoy/authz/allow"
    assert (await service.check(get())).allowed


@pytest.mark.parametrize(("policy", "expected"), [
    ("package envoy.authz\ndefault allow = false\nallow {\n  input.x\n}\n",
     "inline-0.rego:3:7: rego_parse_error: `if` keyword is required before rule body"),
    ("package envoy.authz\nimport rego.v1\ndeny[msg] {\n  msg := \"no\"\n}\nallow := true\n",
     "inline-0.rego:3:11: rego_parse_error: `if` keyword is required"),
    ("package envoy.authz\nimport rego.v1\nallow if any([true])\n",
     "deprecated built-in function calls in expression: any"),
    ("package envoy.authz\nimport rego.v1\nallow if {\n", "inline-0.rego:3:10: this is unclosed"),
])
def test_policies_that_opa_1_rejects_are_config_errors(policy_config, policy_host_factory, policy, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(policy_config(opa_config(inline(policy))), policy_host_factory())
    assert expected in str(caught.value)
    assert "handler opa: policy does not compile" in str(caught.value)


async def test_v0_policies_load_with_rego_version_v0(opa_service):
    service = await opa_service(inline("package envoy.authz\ndefault allow = false\n"
                                       "allow {\n  input.attributes.request.http.method == \"GET\"\n}\n")
                                + "\nregoVersion: v0")
    assert (await service.check(get())).allowed


async def test_undefined_decision_fails_closed_and_uncached(opa_service):
    service = await opa_service(inline("package envoy.authz\nimport rego.v1\nallow if input.nope")
                                + "\nvalidDuration: 30s")
    decision = await service.check(get())
    assert decision.code == Code.INTERNAL
    assert message(decision) == "OPA: decision envoy/authz/allow is undefined"
    assert not decision.valid_duration
    again = await service.check(get())
    assert not again.cache_hit


async def test_fail_mode_open_allows_uncached(opa_service):
    service = await opa_service(inline("package envoy.authz\nimport rego.v1\nallow if input.nope")
                                + "\nfailMode: OPEN")
    decision = await service.check(get())
    assert decision.allowed
    assert "allowed (failMode OPEN)" in message(decision)
    assert not decision.valid_duration


@pytest.mark.parametrize(("value", "text"), [
    ('{"headers": {"a": "b"}}', 'missing "allowed" key'),
    ('{"allowed": "yes"}', "expected allowed to be of type 'boolean' but got 'string'"),
    ('"allow"', "illegal value for policy evaluation result: str"),
    ('{"allowed": false, "http_status": 1000}', "invalid HTTP status code 1000"),
    ('{"allowed": true, "headers": {"a": 1}}', "invalid value type int for header 'a'"),
    ('{"allowed": false, "http_status": 418}', "invalid HTTP status code 418"),
])
async def test_malformed_decisions_are_errors(opa_service, value, text):
    service = await opa_service(inline(f"package envoy.authz\nimport rego.v1\nallow := {value}"))
    decision = await service.check(get())
    assert decision.code == Code.INTERNAL
    assert text in message(decision)


async def test_engine_errors_answer_with_the_fail_mode(opa_service):
    service = await opa_service(inline("package envoy.authz\nimport rego.v1\n"
                                       "allow if to_number(input.attributes.request.http.method) > 1"))
    decision = await service.check(get())
    assert decision.code == Code.INTERNAL
    assert "evaluation failed" in message(decision)


async def test_caching_is_opt_in(opa_service):
    uncached = await opa_service(inline(ALLOW_GET))
    first = await uncached.check(get(request__id="a"))
    assert first.valid_duration == 0
    assert not (await uncached.check(get(request__id="b"))).cache_hit
    cached = await opa_service(inline(ALLOW_GET) + "\nvalidDuration: 30s\nvalidUseCount: 3")
    await cached.check(get())
    hit = await cached.check(get())
    assert hit.cache_hit and hit.valid_duration == 30 and hit.valid_use_count == 3
    assert not (await cached.check(get("/y"))).cache_hit  # the path is part of the input


async def test_data_files_and_bundle_directory(tmp_path, opa_service):
    (tmp_path / "roles.json").write_text(json.dumps({"roles": {"alice": "admin"}}))
    bundle = tmp_path / "bundle"
    (bundle / "acl").mkdir(parents=True)
    (bundle / "acl" / "data.yaml").write_text("admins: [alice]\n")
    (bundle / "policy.rego").write_text(textwrap.dedent("""
        package envoy.authz
        import rego.v1
        default allow := false
        user := input.attributes.request.http.headers["x-user"]
        allow if {
            data.roles[user] == "admin"
            user in data.acl.admins
        }
    """))
    service = await opa_service(f"bundleDir: {bundle}\ndataFiles: [{tmp_path / 'roles.json'}]")
    assert (await service.check(get(request__headers={"x-user": "alice"}))).allowed
    assert not (await service.check(get(request__headers={"x-user": "bob"}))).allowed


def test_conflicting_data_documents_are_config_errors(tmp_path, policy_config, policy_host_factory):
    (tmp_path / "a.json").write_text(json.dumps({"roles": {"alice": "admin"}}))
    (tmp_path / "b.json").write_text(json.dumps({"roles": {"alice": "guest"}}))
    params = inline(ALLOW_GET) + f"\ndataFiles: [{tmp_path / 'a.json'}, {tmp_path / 'b.json'}]"
    with pytest.raises(ConfigError, match="data key roles/alice is defined twice"):
        load_config(policy_config(opa_config(params)), policy_host_factory())


@pytest.mark.parametrize("spelling", ["envoy/authz/allow", "data.envoy.authz.allow", "envoy.authz.allow",
                                      "/envoy/authz/allow"])
async def test_decision_path_spellings(opa_service, spelling):
    service = await opa_service(inline(ALLOW_GET) + f"\ndecision: '{spelling}'")
    assert message(await service.check(get())) == "OPA: allowed by envoy/authz/allow"


@pytest.mark.parametrize(("params", "text"), [
    ("{}", "no policy: give policies"),
    ("url: ftp://x", "expected an http:// or https:// URL"),
    ("{url: 'http://127.0.0.1:1', policies: [x]}", "not both"),
    ("{policies: ['package x'], decision: 'not a path!'}", "not a decision path"),
])
def test_bad_params(policy_config, policy_host_factory, params, text):
    with pytest.raises(ConfigError, match=text):
        load_config(policy_config(opa_config(params)), policy_host_factory())


MIXER = """
apiVersion: config.istio.io/v1alpha2
kind: opa
metadata: {name: opa-handler, namespace: istio-system}
spec:
  checkMethod: data.mixerauthz.allow
  failClose: true
  policy:
    - |
      package mixerauthz
      import rego.v1
      default allow := false
      allow if {
        input.subject.user == "alice"
        input.action.method == "GET"
        input.action.properties.version == "v1"
        not input.subject.groups
      }
---
apiVersion: config.istio.io/v1alpha2
kind: authorization
metadata: {name: authz, namespace: istio-system}
spec:
  subject: {user: 'request.headers["x-user"] | ""'}
  action:
    method: request.method | ""
    path: request.path | ""
    properties: {version: 'destination.labels["version"] | ""'}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: opa-check, namespace: istio-system}
spec:
  actions: [{handler: opa-handler.opa, instances: [authz.authorization]}]
"""


async def test_mixer_authorization_input(policy_config, policy_service_factory):
    service = await policy_service_factory(policy_config(MIXER))
    base = {"request.method": "GET", "request.path": "/", "destination.labels": {"version": "v1"}}
    assert (await service.check({**base, "request.headers": {"x-user": "alice"}})).allowed
    denied = await service.check({**base, "request.headers": {"x-user": "bob"}})
    assert denied.code == Code.PERMISSION_DENIED
    assert "OPA: denied by mixerauthz/allow" in denied.message
