"""The rule index is only a shortcut: indexed decisions equal a scan of every rule, on random policies."""

from __future__ import annotations

import random

from adapters.rbac._engine import Engine, _first
from adapters.rbac._policy import PolicyIssues, parse_policy
from adapters.rbac._request import RequestView
from adapters.requestcontext import RequestContext

PATHS = ["/a", "/b", "/c/1", "/c/2", "/d"]
METHODS = ["GET", "POST", "PUT"]
PRINCIPALS = [f"cluster.local/ns/ns{i}/sa/u{i}" for i in range(4)]
HOSTS = ["a.example", "b.example:8080", "B.example"]


def random_rule(rng: random.Random) -> dict:
    rule: dict = {}
    if rng.random() < 0.7:
        operation: dict = {}
        choice = rng.random()
        if choice < 0.4:
            operation["paths"] = rng.sample(PATHS, rng.randint(1, 2))
        elif choice < 0.55:
            operation["paths"] = ["/c/*"]
        elif choice < 0.7:
            operation["hosts"] = rng.sample(HOSTS, 1)
        if rng.random() < 0.5:
            operation["methods"] = rng.sample(METHODS, rng.randint(1, 2))
        if rng.random() < 0.2:
            operation["ports"] = [str(rng.choice([80, 8080]))]
        if operation:
            rule["to"] = [{"operation": operation}]
    if rng.random() < 0.5:
        rule["from"] = [{"source": {"principals": rng.sample(PRINCIPALS, rng.randint(1, 2))}}]
    if rng.random() < 0.2:
        rule["when"] = [{"key": "request.headers[x-k]", "values": [rng.choice(["1", "2"])]}]
    return rule


def random_policies(rng: random.Random, count: int) -> list:
    issues = PolicyIssues()
    policies = []
    ordinal = 0
    for i in range(count):
        namespace = rng.choice(["foo", "bar", "istio-system"])
        spec: dict = {"action": rng.choice(["ALLOW", "ALLOW", "DENY", "AUDIT"]),
                      "rules": [random_rule(rng) for _ in range(rng.randint(0, 3))]}
        if rng.random() < 0.3:
            spec["selector"] = {"matchLabels": {"app": rng.choice(["x", "y"])}}
        doc = {"apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy",
               "metadata": {"name": f"p{i}", "namespace": namespace}, "spec": spec}
        policy = parse_policy(doc, ordinal, issues)
        assert policy is not None, issues.errors
        ordinal += max(len(policy.rules), 1)
        policies.append(policy)
    return policies


def random_request(rng: random.Random) -> RequestView:
    return RequestView(RequestContext(
        name="r",
        destination_namespace=rng.choice(["foo", "bar", "baz"]),
        destination_labels={"app": rng.choice(["x", "y", "z"])},
        destination_port=rng.choice([80, 8080]),
        source_principal=rng.choice([*PRINCIPALS, None]),
        request_method=rng.choice(METHODS),
        request_path=rng.choice(PATHS),
        request_host=rng.choice([*HOSTS, "a.example:9999"]),
        request_headers={"x-k": rng.choice(["1", "2"])},
    ))


def scan(policies, request: RequestView, action: str):
    """The first matching rule of an action among the policies that apply, by brute force."""
    instance = request.instance
    for policy in policies:
        applies = policy.namespace in ("istio-system", instance.destination_namespace) and all(
            instance.destination_labels.get(k) == v for k, v in policy.selector.items())
        if applies and policy.action == action:
            for rule in policy.rules:
                if rule.matches(request):
                    return rule
    return None


def test_indexed_first_match_equals_a_full_scan():
    rng = random.Random(1234)
    checked = matched = 0
    for _ in range(30):
        policies = random_policies(rng, 60)
        engine = Engine(policies, "istio-system")
        for _ in range(200):
            request = random_request(rng)
            groups = engine.groups_for(request)
            for action in ("ALLOW", "DENY", "AUDIT"):
                expected = scan(policies, request, action)
                got = _first(groups, action, False, request)
                assert got is expected, (action, expected and expected.name, got and got.name)
                checked += 1
                matched += expected is not None
    assert checked == 30 * 200 * 3
    assert matched > checked // 10  # the random policies do match, so the comparison means something


def test_most_rules_are_indexed():
    rng = random.Random(7)
    engine = Engine(random_policies(rng, 200), "istio-system")
    rules = [r for p in engine.policies for r in p.rules]
    keyed = [r for r in rules if r.key is not None]
    assert len(keyed) > len(rules) // 3
    assert {r.key[0] for r in keyed} >= {"path", "principal"}
