"""OPA-Envoy-style policies through the real ext_authz server and Envoy's generated stub.

The policies are written the way OPA-Envoy's primer writes them (``package envoy.authz``,
``import input.attributes.request.http``, v1 syntax, boolean ``allow`` or a result
object) and run unchanged on the embedded engine.
"""

from __future__ import annotations

import json
import time

import grpc
import pytest

from envoy.config.core.v3 import base_pb2

from policy import Code
from tests.envoy.conftest import authz, check_request, headers_of
from tests.opa.conftest import hs256, inline, opa_config

OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD

TOKEN_POLICY = """
package envoy.authz

import rego.v1

import input.attributes.request.http

default allow := false

allow if {
    valid_token
    permitted
}

valid_token if {
    token.valid
    now := time.now_ns() / 1000000000
    token.payload.nbf <= now
    now < token.payload.exp
}

permitted if {
    http.method == "GET"
    token.payload.role in {"guest", "admin"}
    glob.match("/people/*", ["/"], http.path)
}

permitted if {
    http.method == "POST"
    token.payload.role == "admin"
    input.parsed_path == ["people"]
    lower(input.parsed_body.firstname) != base64url.decode(token.payload.sub)
}

token := {"valid": valid, "payload": payload} if {
    [_, encoded] := split(http.headers.authorization, " ")
    [valid, _, payload] := io.jwt.decode_verify(encoded, {"secret": "secret"})
}
"""

OBJECT_POLICY = """
package envoy.authz

import rego.v1

import input.attributes.request.http

default allow := false

allow if {
    input.parsed_path[0] == "api"
    input.parsed_query.lang == ["en"]
}

headers["x-ext-auth-allow"] := "yes"
headers["x-validated-by"] := "security-checkpoint"

request_headers_to_remove := ["x-internal-token"]

response_headers_to_add["x-policy"] := "opa"

status_code := 200 if allow
status_code := 401 if { not allow; not http.headers["x-user"] }
status_code := 403 if { not allow; http.headers["x-user"] }

body := "Authentication Failed" if status_code == 401
body := "Unauthorized Request" if status_code == 403

result["allowed"] := allow
result["headers"] := headers
result["request_headers_to_remove"] := request_headers_to_remove
result["response_headers_to_add"] := response_headers_to_add
result["http_status"] := status_code
result["body"] := body
result["dynamic_metadata"] := {"checked_by": "opa", "path_len": count(input.parsed_path)}
"""


def token(role: str, sub: str = "YWxpY2U=", valid_for: int = 3600) -> str:
    now = int(time.time())
    return "Bearer " + hs256({"role": role, "sub": sub, "nbf": now - 60, "exp": now + valid_for})


async def test_boolean_decision_with_jwt_parsed_path_and_body(policy_config, policy_server_factory):
    running = await policy_server_factory(policy_config(opa_config(inline(TOKEN_POLICY))))
    stub = authz(running, "tcp")

    guest = await stub.Check(check_request(path="/people/7", headers={"authorization": token("guest")}))
    assert guest.status.code == Code.OK

    expired = await stub.Check(check_request(path="/people/7",
                                             headers={"authorization": token("guest", valid_for=-30)}))
    assert expired.status.code == Code.PERMISSION_DENIED
    assert expired.denied_response.status.code == 403
    assert "OPA: denied by envoy/authz/allow" in expired.status.message

    body = json.dumps({"firstname": "Charlie", "lastname": "Opa"})
    json_headers = {"authorization": token("admin"), "content-type": "application/json",
                    "content-length": str(len(body))}
    created = await stub.Check(check_request(method="POST", path="/people?lang=en", body=body, headers=json_headers))
    assert created.status.code == Code.OK
    # The body's firstname equals the token's subject (base64url "alice"): the policy refuses.
    self_body = json.dumps({"firstname": "Alice"})
    refused = await stub.Check(check_request(method="POST", path="/people", body=self_body,
                                             headers={**json_headers, "content-length": str(len(self_body))}))
    assert refused.status.code == Code.PERMISSION_DENIED
    guest_post = await stub.Check(check_request(method="POST", path="/people", body=body,
                                                headers={**json_headers, "authorization": token("guest")}))
    assert guest_post.status.code == Code.PERMISSION_DENIED


async def test_object_decision_headers_status_body_metadata(policy_config, policy_server_factory):
    params = inline(OBJECT_POLICY) + "\ndecision: envoy/authz/result"
    running = await policy_server_factory(policy_config(opa_config(params)))
    stub = authz(running, "unix")

    allowed = await stub.Check(check_request(path="/api/books?lang=en", headers={"x-internal-token": "t"}))
    assert allowed.status.code == Code.OK
    ok = allowed.ok_response
    assert headers_of(ok.headers) == {"x-ext-auth-allow": ("yes", OVERWRITE),
                                      "x-validated-by": ("security-checkpoint", OVERWRITE)}
    assert list(ok.headers_to_remove) == ["x-internal-token"]
    assert headers_of(ok.response_headers_to_add) == {"x-policy": ("opa", APPEND)}
    fields = allowed.dynamic_metadata.fields
    assert fields["checked_by"].string_value == "opa" and fields["path_len"].number_value == 2

    anonymous = await stub.Check(check_request(path="/api/books?lang=de"))
    assert anonymous.status.code == Code.PERMISSION_DENIED
    assert anonymous.denied_response.status.code == 401
    assert anonymous.denied_response.body == "Authentication Failed"
    assert headers_of(anonymous.denied_response.headers)["x-ext-auth-allow"] == ("yes", OVERWRITE)
    assert "OPA: denied by envoy/authz/result" in anonymous.status.message

    known = await stub.Check(check_request(path="/other", headers={"x-user": "bob"}))
    assert (known.denied_response.status.code, known.denied_response.body) == (403, "Unauthorized Request")


async def test_parsed_query_repeated_values_and_form_body(policy_config, policy_server_factory):
    policy = """
        package envoy.authz
        import rego.v1
        default allow := false
        allow if {
            input.parsed_path == ["people"]
            input.parsed_query.id == ["1", "2"]
            input.parsed_body.role == ["admin"]
            input.version.ext_authz == "v3"
            input.attributes.source.address.socketAddress.address == "10.1.2.3"
            input.attributes.destination.address.socketAddress.portValue == 8080
        }
    """
    running = await policy_server_factory(policy_config(opa_config(inline(policy))))
    stub = authz(running, "tcp")
    form = {"content-type": "application/x-www-form-urlencoded"}
    ok = await stub.Check(check_request(method="POST", path="/people?id=1&id=2", body="role=admin", headers=form))
    assert ok.status.code == Code.OK
    other = await stub.Check(check_request(method="POST", path="/people?id=1", body="role=admin", headers=form))
    assert other.status.code == Code.PERMISSION_DENIED


async def test_a_body_that_is_not_json_is_a_400_denial_as_opa_envoy_answers(policy_config, policy_server_factory):
    running = await policy_server_factory(policy_config(opa_config(inline(
        "package envoy.authz\nimport rego.v1\ndefault allow := true"))))
    response = await authz(running, "tcp").Check(check_request(
        method="POST", path="/x", body="{not json", headers={"content-type": "application/json"}))
    assert response.status.code == Code.PERMISSION_DENIED
    assert response.denied_response.status.code == 400
    assert "request body is not valid JSON" in response.denied_response.body


ERRORING = {
    "evaluation error": "allow if to_number(input.attributes.request.http.method) > 1",
    "undefined decision": "allow if input.nope",
    "illegal decision type": 'allow := "yes"',
    "missing allowed": 'allow := {"headers": {"a": "b"}}',
    "bad headers shape": 'allow := {"allowed": true, "headers": "x-a: b"}',
    "bad header value": 'allow := {"allowed": true, "headers": {"x-a": 1}}',
    "bad request_headers_to_remove shape": 'allow := {"allowed": true, "request_headers_to_remove": "x-a"}',
    "status Envoy does not know": 'allow := {"allowed": false, "http_status": 418}',
    "body not a string": 'allow := {"allowed": false, "body": 1}',
    "bad query_parameters_to_set": 'allow := {"allowed": true, "query_parameters_to_set": {"a": 1}}',
}


@pytest.mark.parametrize("rule", ERRORING.values(), ids=ERRORING.keys())
async def test_a_decision_that_errors_is_a_grpc_error_not_a_check_response(policy_config, policy_server_factory,
                                                                           rule):
    running = await policy_server_factory(policy_config(opa_config(inline(
        f"package envoy.authz\nimport rego.v1\n{rule}\n"))))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await authz(running, "unix").Check(check_request())
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "OPA:" in caught.value.details()


async def test_fail_mode_open_allows_an_erroring_decision(policy_config, policy_server_factory):
    params = inline("package envoy.authz\nimport rego.v1\nallow if input.nope") + "\nfailMode: OPEN"
    running = await policy_server_factory(policy_config(opa_config(params)))
    response = await authz(running, "tcp").Check(check_request())
    assert response.status.code == Code.OK


async def test_a_denial_without_body_sends_an_empty_body_and_403(policy_config, policy_server_factory):
    policy = """
        package envoy.authz
        import rego.v1
        default allow := false
        decision := {"allowed": false, "dynamic_metadata": {"reason": "no", "n": 1}} if input.parsed_path[0] == "o"
    """
    running = await policy_server_factory(policy_config(opa_config(inline(policy))))
    stub = authz(running, "tcp")
    denied = await stub.Check(check_request())
    assert denied.status.code == Code.PERMISSION_DENIED
    assert (denied.denied_response.status.code, denied.denied_response.body) == (403, "")
    object_running = await policy_server_factory(policy_config(opa_config(
        inline(policy) + "\ndecision: envoy/authz/decision")))
    object_denied = await authz(object_running, "tcp").Check(check_request(path="/o"))
    assert (object_denied.denied_response.status.code, object_denied.denied_response.body) == (403, "")
    fields = object_denied.dynamic_metadata.fields
    assert fields["reason"].string_value == "no" and fields["n"].number_value == 1
    assert fields["decision_id"].string_value


def _leaves(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, tree


async def test_input_attributes_agree_with_protobufs_json_mapping(policy_config, policy_service_factory):
    """Over ext_authz the default instance gives input.attributes as protobuf's own JSON mapping
    (json_format, as Go's protojson, OPA-Envoy's encoder) of the CheckRequest: all of it when the
    policy may reach all of it, and exactly the reached paths' values otherwise."""
    from google.protobuf import json_format

    from adapters.opa._input import build_input
    from policy.servers.ext_authz import request_bag

    service = await policy_service_factory(policy_config(opa_config(inline(
        "package envoy.authz\nimport rego.v1\ndefault allow := true"))))
    body = json.dumps({"firstname": "Charlie", "tags": ["a", "b"]})
    request = check_request(method="POST", path="/people/a%20b?lang=en&id=1&id=2", body=body,
                            headers={"content-type": "application/json", "x-user": "ann"},
                            source_principal="spiffe://cluster.local/ns/shop/sa/web", sni="books.shop",
                            context_extensions={"route": "r1"}, destination_labels={"app": "books"},
                            source_labels={"app": "web"})
    instance = service.snapshot.instances["request"].build(request_bag(request))
    ours = build_input(instance)
    theirs = json_format.MessageToDict(request)
    assert ours["attributes"] == theirs["attributes"]
    assert {"request.time", "request.http.protocol", "source.address.socketAddress.portValue"} <= set(
        dict(_leaves(ours["attributes"])))
    assert ours["parsed_path"] == ["people", "a b"]
    assert ours["parsed_query"] == {"lang": ["en"], "id": ["1", "2"]}
    assert ours["parsed_body"] == {"firstname": "Charlie", "tags": ["a", "b"]}
    assert ours["source_principal"] == "spiffe://cluster.local/ns/shop/sa/web"
    reached = frozenset({("attributes", "request", "http", "headers", "x-user"), ("attributes", "source", "labels")})
    bounded = build_input(instance, reach=reached)
    assert bounded["attributes"] == {"request": {"http": {"headers": {"x-user": "ann"}}},
                                     "source": {"labels": {"app": "web"}}}
    assert bounded["parsed_body"] == ours["parsed_body"] and "source_principal" not in bounded


VERBATIM_CONFIG = """
handlers:
  - name: opa
    adapter: opa
    params:
      policies:
        - |
          package envoy.authz
          default allow := false
          allow if {
            input.attributes.request.http.protocol == "HTTP/1.1"
            input.attributes.request.time == "2025-11-24T16:00:00Z"
            input.attributes.metadataContext.filterMetadata["envoy.filters.http.jwt_authn"]["https://issuer.example"].sub == "ann"
            input.attributes.source.address.socketAddress.portValue == 43210
            input.parsed_path == ["people"]
          }
instances:
  - {name: request, template: requestcontext, params: {envoy_attributes: envoy.attributes}}
rules:
  - name: opa
    actions: [{handler: opa, instances: [request]}]
"""


async def test_an_instance_can_hand_over_envoys_attributes_verbatim(policy_config, policy_server_factory):
    """With envoy_attributes: envoy.attributes, input.attributes is protobuf's JSON mapping of the
    request's AttributeContext, exactly OPA-Envoy's (protocol as sent, time, metadataContext ...)."""
    from google.protobuf import json_format

    from adapters.opa._input import build_input
    from policy.servers.ext_authz import request_bag

    running = await policy_server_factory(policy_config(VERBATIM_CONFIG))
    request = check_request(path="/people", jwt={"iss": "i", "sub": "ann"})
    response = await authz(running, "tcp").Check(request)
    assert response.status.code == Code.OK
    other = await authz(running, "tcp").Check(check_request(path="/people", jwt={"iss": "i", "sub": "bob"}))
    assert other.status.code == Code.PERMISSION_DENIED
    instance = running.service.snapshot.instances["request"].build(request_bag(request))
    assert build_input(instance)["attributes"] == json_format.MessageToDict(request)["attributes"]
