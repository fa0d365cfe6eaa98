"""ext_authz v3: every row of the CheckRequest → attribute mapping, observed through a real server.

A rule echoes each attribute into a request header of the ``ok_response`` (an
absent attribute fails its expression, so its header is left out; a header missing
from the request's header map reads as "", as in Mixer, and a header operation whose
value is "" is skipped, as in Mixer, so it is left out too), and Envoy's own
generated stub sends the requests over TCP and a Unix socket.
"""

from __future__ import annotations

import pytest

from tests.envoy.conftest import VIA, authz, check_request, headers_of

# header name → expression echoing one attribute (or one key of a map attribute)
ECHO = {
    "source-ip": "source.ip",
    "source-port": "source.port",
    "source-principal": "source.principal",
    "source-namespace": "source.namespace",
    "source-sa": "source.serviceAccount",
    "source-label": 'source.labels["app"]',
    "destination-ip": "destination.ip",
    "destination-port": "destination.port",
    "destination-principal": "destination.principal",
    "destination-namespace": "destination.namespace",
    "destination-sa": "destination.serviceAccount",
    "destination-label": 'destination.labels["version"]',
    "method": "request.method",
    "path": "request.path",
    "url-path": "request.url_path",
    "query-id": 'request.query_params["id"]',
    "query-q": 'request.query_params["q"]',
    "host": "request.host",
    "scheme": "request.scheme",
    "header-user": 'request.headers["x-user"]',
    "header-mixed": 'request.headers["x-mixed-case"]',
    "request-id": "request.id",
    "size": "request.size",
    "time": "request.time",
    "useragent": "request.useragent",
    "referer": "request.referer",
    "protocol": "context.protocol",
    "sni": "connection.requested_server_name",
    "mtls": "connection.mtls",
    "extension": 'context.extensions["route"]',
    "auth-principal": "request.auth.principal",
    "auth-audiences": "request.auth.audiences",
    "auth-presenter": "request.auth.presenter",
    "claim-groups": 'request.auth.claims["groups"]',
    "claim-level": 'request.auth.claims["level"]',
    "claim-admin": 'request.auth.claims["admin"]',
    "claim-org": 'request.auth.claims["org"]',
    "body": "request.body",
}

CONFIG = """
handlers:
  - {name: allow, adapter: shaper, params: {}}
instances:
  - {name: nothing, template: checknothing, params: {}}
rules:
  - name: echo
    actions: [{handler: allow, instances: [nothing]}]
    requestHeaderOperations:
""" + "".join(f"      - {{name: x-{name}, values: ['{expr}']}}\n" for name, expr in ECHO.items())


@pytest.fixture
async def server(envoy_server):
    return await envoy_server(CONFIG)


async def echo(server, via, request):
    response = await authz(server, via).Check(request)
    assert response.status.code == 0, response.status.message
    return {name[2:]: value for name, (value, _) in headers_of(response.ok_response.headers).items()}


@VIA
async def test_full_http_request_maps_every_attribute(server, via):
    request = check_request(
        source=("10.1.2.3", 43210), destination=("10.4.5.6", 8080),
        source_principal="spiffe://cluster.local/ns/shop/sa/frontend", source_labels={"app": "web"},
        destination_principal="spiffe://cluster.local/ns/books/sa/reviews", destination_labels={"version": "v2"},
        method="POST", path="/api/books?id=42&q=a%20b&id=7#frag", host="books.shop:8080", scheme="https",
        request_id="abc-123", size=11, body='{"x": true}', sni="books.shop",
        headers={"x-user": "alice", "user-agent": "curl/8.0", "referer": "https://shop/", "content-type": "text/plain"},
        context_extensions={"route": "books-api"},
        jwt={"iss": "https://issuer.example", "sub": "user-7", "aud": ["books", "shop"], "azp": "web-app",
             "groups": ["readers", "writers"], "level": 3, "admin": False, "org": {"id": "o1"}},
    )
    got = await echo(server, via, request)
    assert got == {
        "source-ip": "10.1.2.3", "source-port": "43210",
        "source-principal": "spiffe://cluster.local/ns/shop/sa/frontend",
        "source-namespace": "shop", "source-sa": "frontend", "source-label": "web",
        "destination-ip": "10.4.5.6", "destination-port": "8080",
        "destination-principal": "spiffe://cluster.local/ns/books/sa/reviews",
        "destination-namespace": "books", "destination-sa": "reviews", "destination-label": "v2",
        "method": "POST", "path": "/api/books?id=42&q=a%20b&id=7#frag", "url-path": "/api/books",
        "query-id": "42", "query-q": "a b", "host": "books.shop:8080", "scheme": "https",
        # A header the request lacks reads as "" (Mixer's map lookup); an operation whose
        # value is "" is skipped (Mixer), so "header-mixed" is not set.
        "header-user": "alice", "request-id": "abc-123", "size": "11", "time": "2025-11-24 16:00:00+00:00",
        "useragent": "curl/8.0", "referer": "https://shop/", "protocol": "http", "sni": "books.shop",
        "mtls": "True", "extension": "books-api",
        "auth-principal": "https://issuer.example/user-7", "auth-audiences": "books", "auth-presenter": "web-app",
        "claim-groups": "readers,writers", "claim-level": "3", "claim-admin": "false", "claim-org": '{"id":"o1"}',
        "body": '{"x": true}',
    }


@VIA
async def test_grpc_content_type_header_case_and_raw_body(server, via):
    request = check_request(headers={"content-type": "application/grpc+proto"}, raw_body=b"\x00\x00\x00\x00\x02hi")
    # Envoy lower-cases header names; a proxy that does not gets them lower-cased here.
    request.attributes.request.http.headers["X-Mixed-Case"] = "yes"
    got = await echo(server, via, request)
    assert got["protocol"] == "grpc"
    assert got["header-mixed"] == "yes"
    assert got["body"] == "\x00\x00\x00\x00\x02hi"
    assert got["mtls"] == "False"


@VIA
async def test_header_map_form_is_read_when_headers_are_absent(server, via):
    request = check_request(headers={})
    http = request.attributes.request.http
    http.ClearField("headers")
    for key, value in (("x-user", "bob"), ("x-user", "carol"), ("user-agent", "raw")):
        entry = http.header_map.headers.add()
        entry.key = key
        entry.raw_value = value.encode()
    got = await echo(server, via, request)
    assert got["header-user"] == "bob,carol"
    assert got["useragent"] == "raw"


@VIA
async def test_only_what_is_present_is_translated(server, via):
    request = check_request(source=None, destination=None, path="/plain", headers={}, request_id="", time=None,
                            method="", host="", scheme="")
    got = await echo(server, via, request)
    # Envoy's header map is there (pseudo-headers at least), so a missing header reads as ""
    # and its operation, valued "", is skipped as in Mixer.
    assert got == {"path": "/plain", "url-path": "/plain", "protocol": "http", "mtls": "False"}


@VIA
async def test_spiffe_parsing_accepts_istio_form_and_ignores_other_principals(server, via):
    got = await echo(server, via, check_request(source_principal="cluster.local/ns/bank/sa/teller",
                                                destination_principal="CN=books,O=shop"))
    assert (got["source-namespace"], got["source-sa"]) == ("bank", "teller")
    assert got["destination-principal"] == "CN=books,O=shop"
    assert "destination-namespace" not in got and "destination-sa" not in got
    got = await echo(server, via, check_request(source_principal="spiffe://td/ns//sa/x"))
    assert "source-namespace" not in got and got["mtls"] == "True"


@VIA
async def test_certificate_without_principal_counts_as_mtls(server, via):
    got = await echo(server, via, check_request(source_certificate="-----BEGIN%20CERTIFICATE-----"))
    assert got["mtls"] == "True" and "source-principal" not in got


@VIA
async def test_tcp_connection_check_is_evaluated_on_what_it_has(server, via):
    got = await echo(server, via, check_request(http=False, sni="db.internal", time=None))
    assert got == {"source-ip": "10.1.2.3", "source-port": "43210", "destination-ip": "10.4.5.6",
                   "destination-port": "8080", "protocol": "tcp", "sni": "db.internal", "mtls": "False"}


@VIA
async def test_jwt_payload_without_sub_or_with_a_string_audience(server, via):
    got = await echo(server, via, check_request(jwt={"iss": "i", "aud": "only", "groups": "g"}))
    assert "auth-principal" not in got
    assert got["auth-audiences"] == "only" and got["claim-groups"] == "g"
