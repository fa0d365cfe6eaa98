"""OPA-Envoy's input.attributes by default, for the paths a policy reaches (adapters/opa/_reach.py).

Over ext_authz the default requestcontext instance carries the CheckRequest's AttributeContext
by path (``envoy.attributes_by_path``); the adapter looks up the paths the policy's references to
``input`` reach, so the decision cache keys on those alone, and hands over the whole document when
it cannot bound them. Requests go through the real ext_authz server over a socket.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from adapters.opa._reach import module_reach, policy_reach
from policy import Code
from tests.envoy.conftest import authz, check_request
from tests.opa.conftest import inline, opa_config

H = ("attributes", "request", "http")

#: (Rego body, paths reached; None: the whole input).
REACH_CASES: list[tuple[str, Any]] = [
    ('input.attributes.request.http.method == "GET"', {(*H, "method")}),
    ('input.attributes.request.http.headers["x-user"] == "a"', {(*H, "headers", "x-user")}),
    ('input["attributes"]["request"].http.path == "/"', {(*H, "path")}),
    ("some k; input.attributes.request.http.headers[k]", {(*H, "headers")}),
    ("count(input.attributes.request.http.headers) > 1", {(*H, "headers")}),
    ("input.attributes.request.http.headers[lower(\"X\")]", {(*H, "headers")}),
    ("x := input.attributes; x.source.service", {("attributes",)}),
    ('input.attributes.metadataContext.filterMetadata["envoy.filters.http.jwt_authn"].p.sub == "ann"',
     {("attributes", "metadataContext", "filterMetadata", "envoy.filters.http.jwt_authn", "p", "sub")}),
    ("input.parsed_query.lang == [\"en\"]", {("parsed_query", "lang")}),
    ("json.marshal(input) != \"\"", None),
    ("walk(input, [p, v])", None),
    ("input[k] == 1", None),
    ("f(1) with input.attributes as {}", None),
    ('x := "input.attributes"  # input', set()),
    ('$"{input.attributes.request.http.method}" == "GET"', None),
]


@pytest.mark.parametrize(("body", "want"), REACH_CASES, ids=[c[0] for c in REACH_CASES])
def test_references_to_input_reach_their_constant_prefix(body: str, want: Any) -> None:
    got = module_reach(f"package p\nimport rego.v1\nallow if {{\n  {body}\n}}\n")
    assert got == want


def test_import_aliases_are_followed_and_import_input_is_everything() -> None:
    aliased = "package p\nimport input.attributes.request.http as h\nallow if h.headers.x == \"1\"\n"
    assert policy_reach([("a.rego", aliased)]) == {(*H, "headers", "x")}
    default_alias = "package p\nimport input.attributes.request.http\nallow if http.method == \"GET\"\n"
    assert policy_reach([("a.rego", default_alias)]) == {(*H, "method")}
    assert policy_reach([("a.rego", "package p\nimport input\nallow if input.x\n")]) is None
    # One module reaching everything makes the policy reach everything; nested paths collapse.
    assert policy_reach([("a.rego", aliased), ("b.rego", "package q\nx := input\n")]) is None
    assert policy_reach([("a.rego", aliased), ("b.rego", "package q\nx := input.attributes.request\n")]) == {
        ("attributes", "request")}


ENVOY_ONLY = """
package envoy.authz
import rego.v1
default allow := false
allow if {
  input.attributes.request.http.protocol == "HTTP/1.1"
  input.attributes.request.time == "2025-11-24T16:00:00Z"
  input.attributes.metadataContext.filterMetadata["envoy.filters.http.jwt_authn"]["https://issuer.example"].sub == "ann"
  input.attributes.source.service == "web.shop.svc"
  input.attributes.source.certificate == "cert-pem"
  input.parsed_path == ["people"]
}
"""


def _request(**changes: Any) -> Any:
    service = changes.pop("service", "web.shop.svc")
    request = check_request(path="/people", jwt={"iss": "i", "sub": changes.pop("sub", "ann")},
                            source_certificate="cert-pem", **changes)
    if service:
        request.attributes.source.service = service
    return request


async def test_default_instance_gives_opa_envoys_fields(policy_config: Any, policy_server_factory: Any) -> None:
    """metadataContext, request.time, the protocol as sent, source.service and source.certificate
    reach a policy with the default instance (no envoy_attributes), as OPA-Envoy gives them."""
    running = await policy_server_factory(policy_config(opa_config(inline(ENVOY_ONLY))))
    stub = authz(running, "tcp")
    assert (await stub.Check(_request())).status.code == Code.OK
    assert (await stub.Check(_request(sub="bob"))).status.code == Code.PERMISSION_DENIED
    assert (await stub.Check(_request(service=""))).status.code == Code.PERMISSION_DENIED
    assert (await stub.Check(_request(time=1_764_000_001))).status.code == Code.PERMISSION_DENIED


async def test_tcp_checks_have_no_request_http(policy_config: Any, policy_server_factory: Any) -> None:
    policy = """
    package envoy.authz
    import rego.v1
    default allow := false
    allow if {
      not input.attributes.request.http
      input.attributes.destination.address.socketAddress.portValue == 8080
    }
    """
    running = await policy_server_factory(policy_config(opa_config(inline(policy))))
    stub = authz(running, "tcp")
    assert (await stub.Check(check_request(http=False))).status.code == Code.OK
    assert (await stub.Check(check_request())).status.code == Code.PERMISSION_DENIED


CACHED_HEADER = """
policies:
  - |
    package envoy.authz
    import rego.v1
    default allow := false
    allow if input.attributes.request.http.headers["x-user"] == "ann"
validDuration: 30s
"""


async def test_decisions_key_on_the_paths_the_policy_reaches(policy_config: Any,
                                                             policy_server_factory: Any) -> None:
    """A policy reading one header: requests differing in other headers (the request id, the path)
    share its cached decision; one differing in that header does not."""
    running = await policy_server_factory(policy_config(opa_config(CACHED_HEADER)))
    stub, stats = authz(running, "tcp"), running.service.dispatcher.cache.stats
    first = await stub.Check(check_request(headers={"x-user": "ann"}, request_id="r1"))
    assert first.status.code == Code.OK
    hits = stats.hits
    again = await stub.Check(check_request(headers={"x-user": "ann", "x-other": "1"}, request_id="r2"))
    assert again.status.code == Code.OK and stats.hits == hits + 1
    other = await stub.Check(check_request(headers={"x-user": "bob"}, request_id="r3"))
    assert other.status.code == Code.PERMISSION_DENIED and stats.hits == hits + 1


UNBOUNDED = """
package envoy.authz
import rego.v1
default allow := false
# walk over the whole input: the scan cannot bound it, so the whole document is handed over.
allow if {
  some path, value
  walk(input, [path, value])
  path == ["attributes", "request", "http", "protocol"]
  value == "HTTP/1.1"
}
"""


async def test_unbounded_policies_get_the_whole_document(policy_config: Any, policy_server_factory: Any,
                                                         policy_service_factory: Any) -> None:
    running = await policy_server_factory(policy_config(opa_config(inline(UNBOUNDED))))
    assert (await authz(running, "tcp").Check(check_request())).status.code == Code.OK
    from adapters.opa._input import build_input
    from policy.servers.ext_authz import request_bag

    request = _request()
    handler = running.service.snapshot.handlers["opa"].handler
    assert handler.compiled.input_reach is None
    instance = running.service.snapshot.instances["request"].build(request_bag(request))
    document = build_input(instance, reach=None)
    assert document["attributes"] == json_format.MessageToDict(request)["attributes"]


def test_decision_log_masks_envoys_attribute_context() -> None:
    """The AttributeContext by path (headers, body, JWT payloads) never reaches a decision log in clear."""
    from policy.runtime.decision_log import MASK, DecisionLog
    from policy.runtime.decision import Decision
    from policy.servers.envoy_attributes import check_request_attributes

    attributes = check_request_attributes(check_request(headers={"authorization": "Bearer secret"}))
    recorded = DecisionLog().record(Decision(), attributes).raw
    assert dict(recorded["envoy.attributes_by_path"]) == {"[]": MASK}
    assert recorded["envoy.attributes"] == MASK
    assert "secret" not in repr(recorded)


def _prefixes(tree: Any, path: tuple[str, ...] = ()) -> Any:
    yield path, tree
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _prefixes(value, (*path, key))


def test_attribute_paths_agree_with_protobufs_json_mapping() -> None:
    """Every path of a rich AttributeContext (and paths protojson leaves out) looks up as json_format
    writes the whole request: scalars, int64 as strings, bytes as base64, maps, time, Struct metadata."""
    import json

    from policy.servers.envoy_paths import AttributePaths

    request = _request(size=42, raw_body=b"\x00\xffbin", context_extensions={"route": "r1"},
                       source_labels={"app": "web"}, destination_principal="spiffe://td/ns/a/sa/b", sni="s.shop")
    request.attributes.request.http.fragment = "frag"
    request.attributes.metadata_context.filter_metadata["x"].update({"n": 1.5, "l": [1, "a", None], "b": True})
    request.attributes.destination.service = ""
    whole = json_format.MessageToDict(request.attributes)
    paths = AttributePaths(request.attributes)
    seen = 0
    for path, value in _prefixes(whole):
        key = json.dumps(list(path), separators=(",", ":"))
        assert paths.get(key) is not None and json.loads(paths.get(key)) == value, key
        seen += 1
    assert seen > 40
    for absent in (["request", "http", "query"], ["destination", "service"], ["request", "http", "nope"],
                   ["metadata_context"], ["routeMetadataContext"], ["request", "http", "headers", "x-none"],
                   ["request", "time", "seconds"], ["source", "labels", "app", "deeper"]):
        assert paths.get(json.dumps(absent)) is None, absent
    assert paths.get("not json") is None and paths.get('{"a": 1}') is None
