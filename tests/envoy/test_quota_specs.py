"""Mixer's QuotaSpec / QuotaSpecBinding: config errors, matching semantics, and quota charging over ext_authz."""

from __future__ import annotations

import textwrap

import grpc
import pytest

from policy.attributes import AttributeBag
from policy.config import parse_config
from policy.config.quota_specs import binding_quotas
from policy.runtime.plugins import build_plugin_host
from policy.sdk import ConfigError
from tests.envoy.conftest import VIA, authz, check_request, handler

API = "apiVersion: config.istio.io/v1alpha2"


def spec(name: str, rules: str, namespace: str = "shop") -> str:
    return f"{API}\nkind: QuotaSpec\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  rules:\n" + \
        textwrap.indent(textwrap.dedent(rules).strip("\n"), "  ") + "\n"


def binding(name: str, services: str, specs: str = "[{name: request-count}]", namespace: str = "shop") -> str:
    return (f"{API}\nkind: QuotaSpecBinding\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
            f"spec:\n  quotaSpecs: {specs}\n  services: {services}\n")


def load(tmp_path, *documents: str):
    (tmp_path / "quotas.yaml").write_text("---\n".join(documents))
    return parse_config(tmp_path, build_plugin_host(autoload=False))


def issues(tmp_path, *documents: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, *documents)
    return [f"{i.document} {i.field}: {i.message}" for i in info.value.issues]


def charged(model, **attributes) -> dict[str, int]:
    quotas = binding_quotas(model.quota_bindings, AttributeBag(attributes), "dedup")
    assert all(q.deduplication_id == "dedup" for q in quotas.values())
    return {name: q.amount for name, q in quotas.items()}


RULES = """
- match:
  - clause:
      request.method: {exact: POST}
      request.path: {prefix: /books}
  - clause:
      request.http_method: {exact: DELETE}
  quotas:
  - {quota: writes, charge: 2}
- quotas:
  - {quota: requests}
- match:
  - clause:
      request.path: {regex: '/api/v[0-9]+'}
  quotas:
  - {quota: requests, charge: 3}
"""


def test_rules_match_any_clause_all_conditions_and_charges_add_up(tmp_path):
    model = load(tmp_path, spec("request-count", RULES), binding("b", '[{service: "*"}]'))
    assert charged(model, **{"request.method": "POST", "request.path": "/books/1"}) == {"writes": 2, "requests": 1}
    assert charged(model, **{"request.method": "POST", "request.path": "/shelves"}) == {"requests": 1}
    assert charged(model, **{"request.method": "DELETE"}) == {"writes": 2, "requests": 1}
    # regex matches the whole value (as Mixer's client did), so /api/v2/x does not
    assert charged(model, **{"request.path": "/api/v2"}) == {"requests": 4}
    assert charged(model, **{"request.path": "/api/v2/x"}) == {"requests": 1}
    # an absent attribute fails only the clause that reads it
    assert charged(model) == {"requests": 1}
    # These specs charge quotas no rule counts: the only warning is that the config has no rules.
    assert [w.document for w in model.warnings] == ["rules"]


@pytest.mark.parametrize(("services", "hits", "misses"), [
    ('[{service: "*"}]', ["anything", "books.shop.svc.cluster.local"], []),
    ('[{service: "*.shop.*"}]', ["books.shop.svc.cluster.local", "books.shop:80", "a.shop"],
     ["books.bank.svc.cluster.local", "shopping.svc"]),
    ("[{service: books.shop.svc.cluster.local}]", ["books.shop.svc.cluster.local", "books.shop.svc.cluster.local:9080"],
     ["books.shop", "xbooks.shop.svc.cluster.local"]),
    ("[{name: books}]", ["books.shop", "books.shop:80", "books.shop.svc", "books.shop.svc.cluster.local"],
     ["books", "books.bank", "books.shop.svc.other.domain", "bookshelf.shop"]),
    ("[{name: books, namespace: bank, domain: corp.local}]", ["books.bank.svc.corp.local"],
     ["books.shop.svc.cluster.local", "books.bank.svc.cluster.local"]),
    ("[{name: books}, {name: reviews}]", ["books.shop", "reviews.shop:9080"], ["ratings.shop"]),
])
def test_bindings_select_destination_services(tmp_path, services, hits, misses):
    model = load(tmp_path, spec("request-count", "- quotas: [{quota: requests}]"), binding("b", services))
    for host in hits:
        assert charged(model, **{"request.host": host}) == {"requests": 1}, host
        # destination.service.host, when a request has it, is what is matched
        assert charged(model, **{"destination.service.host": host, "request.host": "nowhere"}) == {"requests": 1}
    for host in misses:
        assert charged(model, **{"request.host": host}) == {}, host
    if services != '[{service: "*"}]':
        assert charged(model) == {}


def test_spec_reference_defaults_to_the_bindings_namespace_and_unbound_specs_warn(tmp_path):
    model = load(tmp_path, spec("request-count", "- quotas: [{quota: a}]", namespace="bank"),
                 spec("request-count", "- quotas: [{quota: b}]", namespace="shop"),
                 binding("b", '[{service: "*"}]', namespace="shop"))
    assert charged(model) == {"b": 1}
    assert [w.document for w in model.warnings] == ["QuotaSpec/request-count.bank", "rules"]
    assert "not bound" in model.warnings[0].message
    model = load(tmp_path, spec("request-count", "- quotas: [{quota: a}]", namespace="bank"),
                 binding("b", '[{service: "*", labels: {app: x}}]', "[{name: request-count, namespace: bank}]"))
    assert charged(model) == {"a": 1}
    assert [w.field for w in model.warnings] == ["spec.services[0].labels", ""]  # and: no rules


def test_every_error_is_reported_with_document_and_field(tmp_path):
    found = issues(
        tmp_path,
        spec("request-count", """
            - match:
              - clause:
                  source.ip: {exact: 10.0.0.1}
                  request.nope: {exact: x}
                  request.method: {exact: GET, prefix: G}
                  request.path: {regex: '(unclosed'}
              quotas:
              - {quota: q, charge: -1}
              - {charge: 1}
        """),
        binding("b", '[{service: "books*"}, {}]', "[{name: missing}]"),
    )
    doc, bind = "QuotaSpec/request-count.shop", "QuotaSpecBinding/b.shop"
    clause = "spec.rules[0].match[0].clause"
    assert found == [
        f"{doc} {clause}['source.ip']: attribute 'source.ip' is IP_ADDRESS, not STRING; quota clauses compare STRING attributes",
        f"{doc} {clause}['request.nope']: attribute 'request.nope' is not in the vocabulary; quota clauses compare STRING attributes",
        f"{doc} {clause}['request.method']: give exactly one of exact, prefix or regex, got exact, prefix",
        f"{doc} {clause}['request.path'].regex: not a valid regular expression (RE2 syntax): "
        "error parsing regexp '(unclosed': missing ): (unclosed",
        f"{doc} spec.rules[0].quotas[0].charge: expected a whole number >= 0, got a number -1",
        f"{doc} spec.rules[0].quotas[1].quota: a quota name is required",
        f"{bind} spec.services[0].service: only '*' and '*.<namespace>.*' wildcards are allowed, got 'books*'",
        f"{bind} spec.services[1].name: a service name (or service) is required",
        f"{bind} spec.quotaSpecs[0]: QuotaSpec missing.shop not found (QuotaSpecs: request-count.shop)",
    ]


def test_unknown_fields_and_missing_sections_are_errors(tmp_path):
    found = issues(tmp_path, f"{API}\nkind: QuotaSpec\nmetadata: {{name: s}}\nspec: {{rulez: []}}\n",
                   f"{API}\nkind: QuotaSpecBinding\nmetadata: {{name: b}}\nspec: {{}}\n")
    assert found == [
        "QuotaSpec/s spec.rulez: unknown field (known: rules)",
        "QuotaSpecBinding/b spec.services: at least one service is required",
        "QuotaSpecBinding/b spec.quotaSpecs: at least one QuotaSpec reference is required",
    ]


# --- charging quotas on ext_authz checks, with memquota ------------------------------------------------

POLICY = """
handlers:
  - name: counter
    adapter: memquota
    params:
      quotas:
        - {name: requestcount, maxAmount: 3, validDuration: 60s}
instances:
  - name: requestcount
    template: quota
    params: {dimensions: {source: 'source.ip | ip("0.0.0.0")'}}
rules:
  - name: count
    actions: [{handler: counter, instances: [requestcount]}]
"""

QUOTAS = spec("request-count", """
- match:
  - clause: {request.method: {exact: POST}}
  quotas: [{quota: requestcount, charge: 2}]
- match:
  - clause: {request.method: {exact: GET}}
  quotas: [{quota: requestcount}]
""") + "---\n" + binding("books", "[{name: books}]")


@pytest.fixture
async def server(policy_config, policy_server_factory):
    directory = policy_config(POLICY)
    (directory / "quotas.yaml").write_text(QUOTAS)
    return await policy_server_factory(directory)


@VIA
async def test_exhausted_quota_answers_429(server, via):
    stub = authz(server, via)
    for i in range(3):
        response = await stub.Check(check_request(method="GET", host="books.shop:9080", request_id=f"g{i}"))
        assert response.status.code == 0, response.status.message
    response = await stub.Check(check_request(method="GET", host="books.shop:9080", request_id="g3"))
    assert response.status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert response.denied_response.status.code == 429
    assert response.denied_response.body == f"RESOURCE_EXHAUSTED:{response.status.message}"
    assert response.status.message.startswith("counter")
    # another source has its own counter; another service is not bound
    other = await stub.Check(check_request(method="POST", host="books.shop", source=("10.7.7.7", 1), request_id="p"))
    assert other.status.code == 0
    unbound = await stub.Check(check_request(method="GET", host="reviews.shop", request_id="u"))
    assert unbound.status.code == 0


async def test_charge_and_deduplication_by_request_id(server):
    stub = authz(server, "tcp")
    assert (await stub.Check(check_request(method="POST", host="books.shop", request_id="p1"))).status.code == 0
    # Envoy retrying the same request (same x-request-id) is not charged again
    for _ in range(3):
        assert (await stub.Check(check_request(method="POST", host="books.shop", request_id="p1"))).status.code == 0
    exhausted = await stub.Check(check_request(method="POST", host="books.shop", request_id="p2"))
    assert exhausted.denied_response.status.code == 429
    stats = handler(server, "counter").stats
    assert stats["deduplicated"] == 3 and stats["exhausted"] == 1
    # a request no clause matches charges nothing
    assert (await stub.Check(check_request(method="PUT", host="books.shop", request_id="x"))).status.code == 0
    assert handler(server, "counter").stats["calls"] == 5


async def test_the_service_charges_quota_specs_when_asked(policy_config, policy_service_factory):
    """``PolicyService.check(..., quota_specs=id)`` charges the bound specs; transports only pass the id."""
    directory = policy_config(POLICY)
    (directory / "quotas.yaml").write_text(QUOTAS)
    service = await policy_service_factory(directory)
    post = {"request.host": "books.shop", "request.method": "POST", "source.ip": b"\x0a\x00\x00\x01"}
    # Without quota_specs nothing is charged, whatever the bindings say.
    assert (await service.check(dict(post))).code.name == "OK"
    counter = service.snapshot.handlers["counter"].handler
    assert counter.stats["calls"] == 0
    assert (await service.check(dict(post), quota_specs="p1")).code.name == "OK"
    assert (await service.check(dict(post), quota_specs="p1")).code.name == "OK"  # a retry: deduplicated
    assert counter.stats["calls"] == 2 and counter.stats["deduplicated"] == 1
    denied = await service.check(dict(post), quota_specs="p2")  # 2 + 2 > 3
    assert denied.code.name == "RESOURCE_EXHAUSTED"
