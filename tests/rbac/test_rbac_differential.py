"""Differential test: the rbac adapter agrees with the reference evaluator (tests/rbac/reference.py).

Seeded, bounded: 1,000 random policy sets (1-3 ALLOW / DENY / AUDIT policies of 1-2 rules,
drawing every source and operation field, their ``not`` twins and a few ``when`` keys
from small pools so that matches are frequent) times 10 random requests each, HTTP and
TCP, decided in-process by the adapter's handler and by the reference.
"""

from __future__ import annotations

import json
import random
from typing import Any

from adapters.requestcontext import RequestContext
from adapters.rbac import RbacAdapter
from policy import BuildContext, parse_params
from tests.rbac.reference import Req, decide

SEED = 20261129
POLICY_SETS = 1000
REQUESTS_PER_SET = 10

PRINCIPALS = ["cluster.local/ns/default/sa/sleep", "cluster.local/ns/test/sa/a", "td2/ns/default/sa/b"]
POOLS: dict[str, list[str]] = {
    "principals": [*PRINCIPALS, "cluster.local/*", "*/sa/sleep", "*"],
    "namespaces": ["default", "test", "te*", "*"],
    "ipBlocks": ["10.0.0.0/16", "10.0.0.1", "192.168.0.0/16"],
    "trustDomains": ["cluster.local", "td*", "*.local", "*"],
    "requestPrincipals": ["https://iss.example/alice", "https://iss.example/*", "*/alice", "*", "iss/a/b",
                          "iss/a*", "https://iss*"],
    "ports": ["80", "8080", "9090"],
    "methods": ["GET", "POST", "P*"],
    "paths": ["/admin", "/admin*", "*/x", "/public", "/api/{*}/items", "/api/{**}", "/api/{**}/items", "*"],
    "hosts": ["a.example", "*.example", "b.example:8080", "A.EXAMPLE"],
}
WHEN: dict[str, list[str]] = {
    "request.headers[x-user]": ["alice", "bo*", "*"],
    "request.auth.claims[groups]": ["admins", "g2", "g1,g2"],
    "source.ip": ["10.0.0.0/24", "192.168.1.1"],
    "destination.port": ["8080", "9090"],
}
SOURCE_FIELDS = ["principals", "namespaces", "ipBlocks", "requestPrincipals", "trustDomains"]
OPERATION_FIELDS = ["ports", "methods", "paths", "hosts"]


def _pick(rng: random.Random, pool: list[str]) -> list[str]:
    return rng.sample(pool, rng.randint(1, 2))


def _block(rng: random.Random, fields: list[str]) -> dict[str, list[str]]:
    block: dict[str, list[str]] = {}
    for name in rng.sample(fields, rng.randint(1, 2)):
        if rng.random() < 0.35:
            block["not" + name[0].upper() + name[1:]] = _pick(rng, POOLS[name])
        else:
            block[name] = _pick(rng, POOLS[name])
    return block


def _rule(rng: random.Random) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if rng.random() < 0.6:
        rule["from"] = [{"source": _block(rng, SOURCE_FIELDS)} for _ in range(rng.randint(1, 2))]
    if rng.random() < 0.7:
        rule["to"] = [{"operation": _block(rng, OPERATION_FIELDS)} for _ in range(rng.randint(1, 2))]
    if rng.random() < 0.35:
        key = rng.choice(sorted(WHEN))
        cond = {"key": key, ("notValues" if rng.random() < 0.3 else "values"): _pick(rng, WHEN[key])}
        rule["when"] = [cond]
    return rule


def _policies(rng: random.Random, set_index: int) -> list[dict[str, Any]]:
    out = []
    for i in range(rng.randint(1, 3)):
        action = rng.choice(["ALLOW", "ALLOW", "DENY", "AUDIT"])
        out.append({"apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy",
                    "metadata": {"name": f"s{set_index}-p{i}", "namespace": "foo"},
                    "spec": {"action": action, "rules": [_rule(rng) for _ in range(rng.randint(1, 2))]},
                    "_source": "generated"})
    return out


def _request(rng: random.Random) -> Req:
    tcp = rng.random() < 0.3
    req = Req(tcp=tcp, principal=rng.choice([*PRINCIPALS, None]),
              source_ip=rng.choice(["10.0.0.1", "10.0.1.5", "192.168.1.1"]), port=rng.choice([80, 8080, 9090]))
    if tcp:
        return req
    req.method = rng.choice(["GET", "POST", "PUT"])
    req.path = rng.choice(["/admin", "/admin/x", "/public", "/api/v1/items", "/api/v1/v2/items", "/api/", "/x"])
    req.host = rng.choice(["a.example", "b.example:8080", "A.Example", "c.other"])
    user = rng.choice([None, "alice", "bob", ""])
    if user is not None:
        req.headers["x-user"] = user
    if rng.random() < 0.6:
        req.iss, req.sub = rng.choice([("https://iss.example", "alice"), ("https://iss.example", "bob"),
                                       ("iss", "a/b"), ("iss/a", "b"), ("https://other", "alice")])
        req.claims = {"iss": req.iss, "sub": req.sub,
                      "groups": rng.choice(["g1,g2", ["admins", "dev"], ["g2"], True, 7, "admins"])}
    return req


def _instance(req: Req) -> RequestContext:
    import ipaddress

    return RequestContext(
        name="request", destination_namespace="foo", destination_port=req.port,
        source_ip=ipaddress.ip_address(req.source_ip), source_principal=req.principal or "",
        request_protocol="tcp" if req.tcp else "http", request_method=req.method or "",
        request_path=req.path or "", request_host=req.host or "", request_headers=dict(req.headers),
        auth_principal=f"{req.iss}/{req.sub}" if req.iss is not None else "",
        auth_raw_claims=json.dumps(req.claims) if req.claims else "")


def test_adapter_agrees_with_the_reference():
    rng = random.Random(SEED)
    params = parse_params(RbacAdapter.Params, {})
    disagreements = []
    decided = {True: 0, False: 0}
    tcp_cases = 0
    for set_index in range(POLICY_SETS):
        policies = _policies(rng, set_index)
        handler = RbacAdapter.build(params, BuildContext(handler="diff", extras={"documents": policies}))
        for _ in range(REQUESTS_PER_SET):
            req = _request(rng)
            tcp_cases += req.tcp
            expected = decide(policies, req)
            result = handler.check(_instance(req))
            decided[expected] += 1
            if result.status.ok is not expected:
                disagreements.append((policies, req, expected, result.status.message))
    assert not disagreements, (f"{len(disagreements)} disagreements; first: "
                               f"{json.dumps(disagreements[0][0], indent=1)}\n{disagreements[0][1:]}")
    # The generator must exercise both outcomes and both protocols.
    assert decided[True] > 2000 and decided[False] > 2000, decided
    assert tcp_cases > 1500
