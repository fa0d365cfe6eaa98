"""Translating only what a config can read: the same decisions, fewer attributes, re-planned on reload."""

from __future__ import annotations

import pytest

from policy.config import load_config
from policy.runtime.dispatch import Dispatcher
from policy.runtime.plugins import build_plugin_host
from policy.servers.envoy_attributes import FULL, Plan, check_request_attributes
from policy.servers.ext_authz import plan_for, request_bag
from tests.envoy.conftest import authz, check_request, headers_of

CONFIG = """
handlers:
  - name: internal
    adapter: listchecker
    params: {entryType: IP_ADDRESSES, overrides: ["10.0.0.0/8"], cachingInterval: 60s}
  - name: nope
    adapter: denier
    params: {status: {code: 7, message: "not allowed"}, validDuration: 60s}
instances:
  - {name: source-ip, template: listentry, params: {value: 'source.ip | ip("0.0.0.0")'}}
  - {name: nothing, template: checknothing, params: {}}
rules:
  - name: internal-only
    actions: [{handler: internal, instances: [source-ip]}]
    requestHeaderOperations:
      - {name: x-caller, values: ['source.namespace | "unknown"']}
  - name: no-admin
    match: request.url_path == "/admin" || request.headers["x-role"] == "intruder"
    actions: [{handler: nope, instances: [nothing]}]
"""

REQUESTS = [
    check_request(),
    check_request(path="/admin?x=1", source_principal="spiffe://td/ns/shop/sa/web"),
    check_request(headers={"x-role": "intruder"}),
    check_request(source=("192.168.1.1", 1)),
    check_request(http=False),
    check_request(source=None, headers={"X-Role": "intruder"}),
]


@pytest.fixture
def snapshot(tmp_path):
    (tmp_path / "policy.yaml").write_text(CONFIG)
    return load_config(tmp_path, build_plugin_host(autoload=False))


def test_the_plan_holds_what_the_config_reads(snapshot):
    plan = plan_for(snapshot)
    assert plan.names == {"source.ip", "source.namespace", "request.url_path", "request.headers"}
    assert plan.header_keys == ("x-role",)
    assert plan_for(snapshot) is plan  # computed once per snapshot
    bag = request_bag(check_request(source_principal="spiffe://td/ns/shop/sa/web", path="/a?b=c",
                                    headers={"x-role": "r", "x-other": "o"}), plan)
    assert bag["request.headers"] == {"x-role": "r"}
    assert bag["source.namespace"] == "shop" and bag["request.url_path"] == "/a"
    for skipped in ("request.time", "destination.namespace", "context.protocol", "request.auth.claims",
                    "connection.mtls", "request.useragent"):
        assert skipped not in bag, skipped


@pytest.mark.parametrize("index", range(len(REQUESTS)))
async def test_planned_and_full_translation_decide_alike(snapshot, index):
    request = REQUESTS[index]
    planned = await Dispatcher(snapshot).check(request_bag(request, plan_for(snapshot)))
    full = await Dispatcher(snapshot).check(request_bag(request, FULL))
    assert (planned.status, planned.rules, planned.request_headers) == (full.status, full.rules, full.request_headers)
    assert planned.referenced == full.referenced  # the same reads, present or absent: the same cache keys


def test_capitalized_header_names_are_still_found():
    request = check_request(headers={})
    request.attributes.request.http.headers["X-Role"] = "admin"
    plan = Plan.for_reads([("request.headers", "x-role"), ("request.useragent", None)])
    assert check_request_attributes(request, plan)["request.headers"] == {"x-role": "admin"}
    assert check_request_attributes(request)["request.headers"]["x-role"] == "admin"


def test_whole_map_reads_and_unknown_expressions_translate_everything():
    plan = Plan.for_reads([("request.headers", None), ("request.headers", "a")])
    assert plan.header_keys is None
    assert check_request_attributes(check_request(), plan)["request.headers"]["x-request-id"] == "req-1"
    assert FULL.names >= {"request.time", "connection.mtls", "request.auth.claims"}


async def test_a_reload_replans(policy_config, policy_server_factory):
    directory = policy_config(CONFIG)
    running = await policy_server_factory(directory)
    stub = authz(running, "unix")
    first = await stub.Check(check_request(source_principal="spiffe://td/ns/shop/sa/web"))
    assert headers_of(first.ok_response.headers) == {"x-caller": ("shop", 2)}
    (directory / "policy.yaml").write_text(CONFIG.replace('source.namespace | "unknown"', 'request.host | "none"'))
    assert await running.service.reload(force=True)
    second = await stub.Check(check_request(source_principal="spiffe://td/ns/shop/sa/web", host="books.shop"))
    assert headers_of(second.ok_response.headers) == {"x-caller": ("books.shop", 2)}
