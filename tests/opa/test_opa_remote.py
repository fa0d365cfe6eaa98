"""A remote OPA server asked through opa-python-client's async client: up, slow, failing and down.

No OPA server binary can be installed in this environment, so the server is OPA's
Data API (``POST /v1/data/<path>`` → ``{"result": ...}``) served on 127.0.0.1 by
the embedded engine from the same Rego (:class:`tests.opa.conftest.DataApi`); the
adapter's client talks real HTTP to it.
"""

from __future__ import annotations

import socket

from policy import Code
from tests.opa.conftest import message

POLICY = """
package envoy.authz
import rego.v1
default allow := false
allow if input.attributes.request.http.method == "GET"
result := {"allowed": allow, "headers": {"x-checked-by": "remote-opa"}, "http_status": 409} if not allow
result := {"allowed": allow, "headers": {"x-checked-by": "remote-opa"}} if allow
"""


def req(method: str = "GET") -> dict:
    return {"request.method": method, "request.path": "/people?x=1", "request.headers": {"x-user": "ann"}}


async def test_server_up_boolean_and_object_decisions(data_api, opa_service):
    api = await data_api(POLICY)
    service = await opa_service(f"url: {api.url}\ntimeout: 2s")
    assert (await service.check(req("GET"))).allowed
    denied = await service.check(req("POST"))
    assert denied.code == Code.PERMISSION_DENIED and message(denied) == "OPA: denied by envoy/authz/allow"
    sent = api.requests[0]["input"]
    assert sent["parsed_path"] == ["people"] and sent["parsed_query"] == {"x": ["1"]}
    assert sent["attributes"]["request"]["http"]["headers"] == {"x-user": "ann"}

    objects = await opa_service(f"url: {api.url}\ndecision: envoy/authz/result\nvalidDuration: 5s")
    allowed = await objects.check(req("GET"))
    assert allowed.allowed and [(h.name, h.value) for h in allowed.request_headers] == [("x-checked-by", "remote-opa")]
    refused = await objects.check(req("DELETE"))
    assert refused.http_status == 409
    assert (await objects.check(req("GET"))).cache_hit  # opted in: the server is not asked again
    assert len(api.requests) == 4


async def test_slow_server_times_out_closed_and_open(data_api, opa_service):
    api = await data_api(POLICY)
    api.delay = 1.0
    closed = await opa_service(f"url: {api.url}\ntimeout: 100ms")
    decision = await closed.check(req())
    assert decision.code == Code.DEADLINE_EXCEEDED
    assert f"OPA at {api.url} did not answer within 0.1s" in message(decision)
    assert not decision.valid_duration
    opened = await opa_service(f"url: {api.url}\ntimeout: 100ms\nfailMode: OPEN")
    decision = await opened.check(req("POST"))
    assert decision.allowed and "allowed (failMode OPEN)" in message(decision)
    assert not decision.valid_duration


async def test_server_down_is_unavailable(opa_service):
    with socket.socket() as bound:  # bound, never listening: connections are refused, no one else can take it
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        service = await opa_service(f"url: {url}\ntimeout: 1s")
        decision = await service.check(req())
    assert decision.code == Code.UNAVAILABLE
    assert f"OPA at {url} failed" in message(decision)


async def test_server_error_is_unavailable_and_recovers(data_api, opa_service):
    api = await data_api(POLICY)
    api.status = 500
    service = await opa_service(f"url: {api.url}\ntimeout: 1s")
    failed = await service.check(req())
    assert failed.code == Code.UNAVAILABLE and "500" in message(failed)
    api.status = 200
    assert (await service.check(req())).allowed


async def test_undefined_remote_decision_fails_closed(data_api, opa_service):
    api = await data_api(POLICY)
    service = await opa_service(f"url: {api.url}\ndecision: envoy/authz/missing")
    decision = await service.check(req())
    assert decision.code == Code.INTERNAL
    assert message(decision) == "OPA: decision envoy/authz/missing is undefined"
