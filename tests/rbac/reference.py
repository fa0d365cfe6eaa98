"""A small, independent reference evaluator of Istio AuthorizationPolicy semantics (tests only).

Written from the AuthorizationPolicy reference (istio/api security/v1beta1/
authorization_policy.proto) and Istio's generator (pilot/pkg/security/authz/model), not
from the adapter: policies are the raw YAML mappings, requests a plain :class:`Req`. It
covers what the differential test generates: ALLOW / DENY / AUDIT, every source and
operation field with its ``not`` twin, a few ``when`` keys, HTTP and TCP requests.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Req:
    """One request as the mesh sees it."""

    tcp: bool = False
    principal: str | None = None  # peer identity without spiffe://
    iss: str | None = None
    sub: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    source_ip: str = "10.0.0.1"
    port: int = 8080
    method: str | None = None
    path: str | None = None
    host: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def pattern(p: str, value: str | None, *, fold: bool = False) -> bool:
    """Istio's string forms: exact, prefix*, *suffix, * (non-empty)."""
    if value is None or value == "":
        return value == "" and p == ""
    if fold:
        p, value = p.lower(), value.lower()
    if p == "*":
        return True
    if p.startswith("*"):
        return value.endswith(p[1:])
    if p.endswith("*"):
        return value.startswith(p[:-1])
    return value == p


def path_pattern(p: str, path: str | None) -> bool:
    if path is None:
        return False
    if "{*}" not in p and "{**}" not in p:
        return pattern(p, path)
    lit = "[A-Za-z0-9._~%!$&'()+,;:@=-]"
    regex = "/".join(lit + "+" if s == "{*}" else "(?:" + lit + "|/)*" if s == "{**}" else re.escape(s)
                     for s in p.split("/"))
    return re.fullmatch(regex, path) is not None


def header_pattern(p: str, value: str | None) -> bool:
    if value is None:
        return False
    return True if p == "*" else pattern(p, value) or (p == "" and value == "")


def host_pattern(p: str, host: str | None) -> bool:
    if host is None:
        return False
    if pattern(p, host, fold=True):
        return True
    bare, sep, port = host.rpartition(":")
    return bool(sep) and port.isdigit() and ":" not in p and pattern(p, bare, fold=True)


def ip_in(block: str, ip: str | None) -> bool:
    return ip is not None and ipaddress.ip_address(ip) in ipaddress.ip_network(block, strict=False)


def namespace_of(principal: str | None, p: str) -> bool:
    if not principal:
        return False
    return re.fullmatch(".*/ns/" + ".*".join(re.escape(x) for x in p.split("*")) + "/.*", principal) is not None


def request_principal(p: str, req: Req) -> bool:
    if req.iss is None or req.sub is None:
        return False
    if p == "*":
        return bool(req.iss) and bool(req.sub)
    iss, slash, sub = p.rpartition("/")
    if not slash:
        # No "/": a prefix or suffix of the whole value stands for the iss (or sub) alone.
        if p.startswith("*"):
            return bool(req.iss) and req.sub.endswith(p[1:])
        if p.endswith("*"):
            return req.iss.startswith(p[:-1]) and bool(req.sub)
        return req.iss == p and req.sub == ""
    if p.startswith("*"):
        return (bool(req.iss) if iss == "*" else req.iss.endswith(iss[1:])) and req.sub == sub
    if p.endswith("*"):
        return req.iss == iss and (bool(req.sub) if sub == "*" else req.sub.startswith(sub[:-1]))
    return req.iss == iss and req.sub == sub


def claim_values(req: Req, name: str) -> list[str]:
    value = req.claims.get(name)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def trust_domain(p: str, principal: str | None) -> bool:
    if not principal:
        return False
    domain = principal.split("/", 1)[0]
    return p == "*" or (pattern(p, domain) if "*" in p else domain == p)


# field name -> (HTTP only, test of one value)
FIELDS: dict[str, tuple[bool, Any]] = {
    "principals": (False, lambda v, r: pattern(v, r.principal)),
    "namespaces": (False, lambda v, r: namespace_of(r.principal, v)),
    "ipBlocks": (False, lambda v, r: ip_in(v, r.source_ip)),
    "trustDomains": (False, lambda v, r: trust_domain(v, r.principal)),
    "requestPrincipals": (True, request_principal),
    "ports": (False, lambda v, r: int(v) == r.port),
    "methods": (True, lambda v, r: header_pattern(v, r.method)),
    "paths": (True, lambda v, r: path_pattern(v, r.path)),
    "hosts": (True, lambda v, r: host_pattern(v, r.host)),
}


def when_test(key: str) -> tuple[bool, Any]:
    if key.startswith("request.headers["):
        name = key[len("request.headers["):-1]
        return True, lambda v, r: header_pattern(v, r.headers.get(name))
    if key.startswith("request.auth.claims["):
        name = key[len("request.auth.claims["):-1]
        return True, lambda v, r: any(pattern(v, c) for c in claim_values(r, name))
    if key == "source.ip":
        return False, lambda v, r: ip_in(v, r.source_ip)
    if key == "destination.port":
        return False, lambda v, r: int(v) == r.port
    raise ValueError(key)


def field_matches(http_only: bool, test: Any, values: list[str], not_values: list[str], req: Req,
                  action: str) -> bool | None:
    """True/False, or None when the rule is dropped (ALLOW with an HTTP-only field, TCP)."""
    if req.tcp and http_only:
        return None if action == "ALLOW" else True
    if values and not any(test(v, req) for v in values):
        return False
    return not (not_values and any(test(v, req) for v in not_values))


def block_matches(block: dict[str, Any], req: Req, action: str) -> bool | None:
    result: bool | None = True
    for name, (http_only, test) in FIELDS.items():
        not_name = "not" + name[0].upper() + name[1:]
        if name in block or not_name in block:
            got = field_matches(http_only, test, block.get(name, []), block.get(not_name, []), req, action)
            if got is None:
                return None
            result = result and got
    return result


def rule_matches(rule: dict[str, Any], req: Req, action: str) -> bool:
    results: list[bool | None] = []
    for cond in rule.get("when", []):
        http_only, test = when_test(cond["key"])
        results.append(field_matches(http_only, test, cond.get("values", []), cond.get("notValues", []), req, action))
    for key, inner in (("from", "source"), ("to", "operation")):
        if key in rule:
            alternatives = [block_matches(item[inner], req, action) for item in rule[key]]
            if any(a is None for a in alternatives):
                return False  # Istio's generator fails the whole rule for the TCP filter
            results.append(any(alternatives))
    if any(r is None for r in results):
        return False
    return all(results)


def decide(policies: list[dict[str, Any]], req: Req) -> bool:
    """Allowed? Policies all apply to the workload (same namespace, no selector)."""
    def matching(action: str) -> bool:
        return any(rule_matches(rule, req, action) for p in policies if p["spec"].get("action", "ALLOW") == action
                   for rule in p["spec"].get("rules", []))

    if matching("DENY"):
        return False
    if not any(p["spec"].get("action", "ALLOW") == "ALLOW" for p in policies):
        return True
    return matching("ALLOW")
