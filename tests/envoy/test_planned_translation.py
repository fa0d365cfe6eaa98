"""A translation written for a plan gives exactly what the generic translation gives with that plan."""

from __future__ import annotations

import random

import pytest

from policy.servers.envoy_attributes import PRODUCED, Plan, TranslationError, check_request_attributes
from policy.servers.planned_translation import compile_plan
from tests.envoy.conftest import check_request

#: What the written translations cover; every other attribute makes the plan fall back to the generic one.
COVERED = sorted({f"{side}.{name}" for side in ("source", "destination")
                  for name in ("ip", "port", "principal", "namespace", "serviceAccount")}
                 | {"request.method", "request.path", "request.host", "request.scheme", "request.id", "request.size"})
HEADER_KEYS = ["x-user", "x-role", ":authority", "user-agent", "x-missing"]


def _requests(rng: random.Random) -> list:
    """Requests with and without each part: peers (v4, v6, none), principals, headers (also capitalized), no http."""
    out = [check_request(), check_request(http=False), check_request(source=None, destination=None),
           check_request(source_principal="spiffe://td/ns/shop/sa/web", destination_principal="not-spiffe"),
           check_request(headers={"X-User": "ann", "x-role": "admin"}), check_request(size=0),
           check_request(size=123, method="", path="", host="", scheme="", request_id="")]
    for _ in range(60):
        request = check_request(
            source=rng.choice([None, ("10.0.0.1", 0), ("fd00::1", 443), ("192.168.9.9", 51234)]),
            destination=rng.choice([None, ("10.4.5.6", 8080), ("::1", 0)]),
            source_principal=rng.choice(["", "spiffe://cluster.local/ns/a/sa/b", "cluster.local/ns/x/sa/y", "odd"]),
            destination_principal=rng.choice(["", "spiffe://td/ns/shop/sa/books"]),
            http=rng.random() > 0.15, method=rng.choice(["", "GET", "POST"]), path=rng.choice(["", "/", "/a?b=c"]),
            host=rng.choice(["", "books.shop"]), scheme=rng.choice(["", "https"]),
            request_id=rng.choice(["", "r-1"]), size=rng.choice([-1, 0, 7]),
            headers={(key.upper() if rng.random() < 0.2 else key): f"v{i}"
                     for i, key in enumerate(HEADER_KEYS) if rng.random() < 0.5})
        if rng.random() < 0.1:  # Envoy's header_map form instead of the headers map
            http = request.attributes.request.http
            http.ClearField("headers")
            for key in ("x-user", "X-Role", "x-user"):
                http.header_map.headers.add(key=key, value="hm")
        out.append(request)
    return out


def _plans(rng: random.Random) -> list[Plan]:
    plans = [Plan.for_reads([(name, None)]) for name in COVERED]
    plans += [Plan.for_reads([("request.headers", key)]) for key in HEADER_KEYS]
    for _ in range(150):
        reads = [(name, None) for name in rng.sample(COVERED, rng.randint(1, len(COVERED)))]
        reads += [("request.headers", key) for key in rng.sample(HEADER_KEYS, rng.randint(0, 3))]
        plans.append(Plan.for_reads(reads))
    return plans


def test_a_written_translation_equals_the_generic_one_on_every_plan_and_request():
    rng = random.Random(17)
    requests = _requests(rng)
    compared = 0
    for plan in _plans(rng):
        translate = compile_plan(plan)
        assert translate is not None, plan
        for request in requests:
            assert translate(request) == check_request_attributes(request, plan), (plan, request)
            compared += 1
    assert compared > 10_000


def test_plans_it_does_not_cover_are_left_to_the_generic_translation():
    for name in sorted(PRODUCED - set(COVERED) - {"request.headers"}):
        assert compile_plan(Plan.for_reads([(name, None), ("source.ip", None)])) is None, name
    assert compile_plan(Plan.for_reads([("request.headers", None)])) is None  # the whole header map


def test_a_bad_address_is_the_same_error():
    plan = Plan.for_reads([("source.ip", None)])
    request = check_request(source=("not-an-ip", 1))
    with pytest.raises(TranslationError) as generic:
        check_request_attributes(request, plan)
    with pytest.raises(TranslationError) as written:
        compile_plan(plan)(request)  # type: ignore[misc]
    assert str(written.value) == str(generic.value)
