"""OPA-Envoy's input document, and the CheckRequest riding along in the bag without touching the cache."""

from __future__ import annotations

import ipaddress

import pytest

from policy.attributes import RecordingBag, standard_vocabulary
from policy.expr import ExpressionError, compile_expression
from policy.runtime.cache import DecisionCache
from policy.servers.envoy_input import ENVOY_REQUEST_KEY, EnvoyInputError, envoy_input, envoy_input_from_bag
from policy.servers.ext_authz import request_bag
from tests.envoy.conftest import check_request


def test_input_document_has_opa_envoys_members():
    request = check_request(path="/people/a%2Fb/x?name=al&name=bo&empty=&q=a+b", size=12,
                            source_principal="spiffe://cluster.local/ns/shop/sa/web",
                            context_extensions={"route": "r"}, jwt={"iss": "i", "sub": "s"})
    document = envoy_input(request)
    assert set(document) == {"attributes", "parsed_path", "parsed_query", "parsed_body", "truncated_body", "version"}
    assert document["version"] == {"ext_authz": "v3", "encoding": "protojson"}
    # Go's url.Parse decodes the path before OPA-Envoy splits it, so an encoded "/" splits too
    assert document["parsed_path"] == ["people", "a", "b", "x"]
    assert document["parsed_query"] == {"name": ["al", "bo"], "empty": [""], "q": ["a b"]}
    assert document["parsed_body"] is None and document["truncated_body"] is False
    attributes = document["attributes"]
    # protojson: lowerCamelCase names, int64 as a string, timestamps as RFC 3339
    assert attributes["source"]["address"]["socketAddress"] == {"address": "10.1.2.3", "portValue": 43210}
    assert attributes["source"]["principal"] == "spiffe://cluster.local/ns/shop/sa/web"
    assert attributes["request"]["http"]["size"] == "12"
    assert attributes["request"]["http"]["headers"]["x-request-id"] == "req-1"
    assert attributes["request"]["time"] == "2025-11-24T16:00:00Z"
    assert attributes["contextExtensions"] == {"route": "r"}
    jwt = attributes["metadataContext"]["filterMetadata"]["envoy.filters.http.jwt_authn"]
    assert jwt == {"https://issuer.example": {"iss": "i", "sub": "s"}}


def test_root_path_and_no_query():
    document = envoy_input(check_request(path="/"))
    assert document["parsed_path"] == [""] and document["parsed_query"] == {}


@pytest.mark.parametrize(("content_type", "body", "expected"), [
    ("application/json", '{"firstname": "Ann", "n": [1, 2]}', {"firstname": "Ann", "n": [1, 2]}),
    ("application/json; charset=utf-8", "[]", []),
    ("application/x-www-form-urlencoded", "a=1&a=2&b=x+y", {"a": ["1", "2"], "b": ["x y"]}),
    ("text/plain", "hello", None),
    ("application/grpc", "\x00\x00\x00\x00\x00", None),
])
def test_bodies_are_parsed_by_content_type(content_type, body, expected):
    request = check_request(method="POST", headers={"content-type": content_type}, body=body)
    assert envoy_input(request)["parsed_body"] == expected


def test_multipart_form_values_and_json_parts():
    boundary = "XyZ"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nDune\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n"
            f"{{\"pages\": 412}}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nEmma\r\n--{boundary}--\r\n")
    request = check_request(method="POST", headers={"content-type": f"multipart/form-data; boundary={boundary}"},
                            raw_body=body.encode())
    assert envoy_input(request)["parsed_body"] == {"title": ["Dune", "Emma"], "meta": [{"pages": 412}]}


def test_truncated_body_is_flagged_and_not_parsed():
    request = check_request(method="POST", body='{"a": 1', headers={"content-type": "application/json",
                                                                     "content-length": "100"})
    document = envoy_input(request)
    assert document["truncated_body"] is True and document["parsed_body"] is None


def test_unparsable_bodies_are_errors_naming_the_problem():
    with pytest.raises(EnvoyInputError, match="not valid JSON"):
        envoy_input(check_request(body="{nope", headers={"content-type": "application/json"}))
    with pytest.raises(EnvoyInputError, match="content-length is not a number"):
        envoy_input(check_request(body="{}", headers={"content-type": "application/json", "content-length": "x"}))


def test_the_bag_carries_the_request_under_a_key_no_expression_can_read():
    request = check_request(request_id="abc")
    bag = request_bag(request)
    assert bag[ENVOY_REQUEST_KEY] is request
    assert bag["source.ip"] == ipaddress.ip_address("10.1.2.3")
    assert envoy_input_from_bag(bag) == envoy_input(request)
    assert envoy_input_from_bag({"source.ip": bag["source.ip"]}) is None
    vocabulary = standard_vocabulary()
    assert ENVOY_REQUEST_KEY not in vocabulary
    for text in (ENVOY_REQUEST_KEY, f"{ENVOY_REQUEST_KEY} == \"\"", "envoy.check_request"):
        with pytest.raises(ExpressionError):
            compile_expression(text, vocabulary)


def test_decisions_read_through_a_recording_bag_never_key_on_the_request():
    match = compile_expression('request.method == "GET" && source.ip == ip("10.1.2.3")', standard_vocabulary())
    first = request_bag(check_request(request_id="one"))
    recording = RecordingBag(first)
    assert match.evaluate(recording) is True
    assert all(name != ENVOY_REQUEST_KEY for name, _ in recording.reads)
    cache = DecisionCache(types=standard_vocabulary())
    assert cache.store(recording.reads, first.raw, "allow", 10.0, None)
    # a different request (another id, another CheckRequest object) with the same read values hits
    assert cache.lookup(request_bag(check_request(request_id="two")).raw) == "allow"
    assert cache.lookup(request_bag(check_request(request_id="three", method="PUT")).raw) is None
