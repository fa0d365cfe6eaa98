"""Parsing Istio ``AuthorizationPolicy`` documents into compiled rules, with every error named.

Semantics follow Istio's ``pilot/pkg/security/authz`` (model.go, generator.go):

* a rule matches when its ``when`` conditions all hold, one of its ``from`` sources
  matches (any source when ``from`` is empty) and one of its ``to`` operations matches
  (any operation when ``to`` is empty); inside a source or operation every field set
  must match; a field matches when one of its values does and none of its ``not``
  values does;
* a policy without rules matches nothing (``spec: {}`` allows nothing), ``rules: [{}]``
  matches everything;
* the ``istio.io/dry-run`` annotation (Go's ``strconv.ParseBool`` spellings) makes the
  policy a shadow policy: evaluated and reported, never enforced;
* every rule is compiled twice, as Istio builds it for the HTTP filter and for the TCP
  filter (``model.Generate(forTCP)``): in the TCP form the HTTP-only values (hosts,
  methods, paths, requestPrincipals, ``request.*`` keys, their ``not`` twins) are
  dropped from DENY, AUDIT and CUSTOM rules ("missing attributes are treated as
  matches"), and an ALLOW rule using any of them has no TCP form (it never matches);
* policies with ``targetRef(s)`` attach to gateways: ignored with a warning.

Where Istio's webhook validation would reject a document (unknown fields or ``when``
keys, a bad CIDR, port or path template, an empty value, CUSTOM without a provider, a
provider on another action, an empty source or operation, ``serviceAccounts`` together
with ``principals`` or ``namespaces``, ``selector`` with ``targetRef``), this module
reports an error naming the file, the policy and the field, and the whole config is
rejected (the last good one keeps serving).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import attrgetter as _get
from typing import Any

from adapters.rbac._match import MatchError, header_set, ip_set, path_set, port_number, port_set, string_set
from adapters.rbac._predicates import (
    SUPPORTED_KEYS,
    Pred,
    add_field,
    condition,
    host_matcher,
    is_http_only_key,
    namespace_matcher,
    negate,
    request_principal_matcher,
    service_account_matcher,
    trust_domain_matcher,
)
from adapters.rbac._request import RequestView

ACTIONS = ("ALLOW", "DENY", "AUDIT", "CUSTOM")
API_GROUP = "security.istio.io/"
KIND = "AuthorizationPolicy"
DRY_RUN = "istio.io/dry-run"
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}

SPEC_KEYS = ("selector", "action", "provider", "rules", "targetRef", "targetRefs")
RULE_KEYS = ("from", "to", "when")
SOURCE_KEYS = ("principals", "requestPrincipals", "namespaces", "serviceAccounts", "ipBlocks",
               "remoteIpBlocks", "trustDomains")
OPERATION_KEYS = ("hosts", "ports", "methods", "paths")


class PolicyIssues:
    """Collects errors as ``(file, document, field, message)`` tuples."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str, str, str]] = []
        self.warnings: list[tuple[str, str, str, str]] = []

    def add(self, file: str, document: str, at: str, message: str) -> None:
        """Record one error."""
        self.errors.append((file, document, at, message))

    def warn(self, file: str, document: str, at: str, message: str) -> None:
        """Record one warning (the document is skipped, the config still loads)."""
        self.warnings.append((file, document, at, message))


@dataclass(eq=False, slots=True)
class CompiledRule:
    """One rule of one policy, compiled.

    ``froms`` / ``tos`` are alternatives (None: any); each alternative is a tuple of
    predicates that must all hold. ``key`` is an index hint: ``(field, values)`` such
    that the rule can only match a request whose ``field`` is one of ``values``.
    """

    policy: "CompiledPolicy"
    index: int
    ordinal: int
    froms: tuple[tuple[Pred, ...], ...] | None
    tos: tuple[tuple[Pred, ...], ...] | None
    when: tuple[Pred, ...]
    key: tuple[str, frozenset[Any]] | None = None
    name: str = ""
    #: The rule as Istio builds it for a TCP (network filter) check; None: never matches TCP.
    tcp: "CompiledRule | None" = None

    def matches(self, request: RequestView) -> bool:
        """Tell whether the request matches this rule."""
        for pred in self.when:
            if not pred(request):
                return False
        # Plain loops: this runs for every candidate rule of every request.
        froms = self.froms
        if froms is not None:
            for alternative in froms:
                for pred in alternative:
                    if not pred(request):
                        break
                else:
                    break
            else:
                return False
        tos = self.tos
        if tos is None:
            return True
        for alternative in tos:
            for pred in alternative:
                if not pred(request):
                    break
            else:
                return True
        return False


@dataclass(eq=False)
class CompiledPolicy:
    """One AuthorizationPolicy: where it applies, its action and its rules."""

    namespace: str
    name: str
    action: str
    selector: Mapping[str, str]
    rules: list[CompiledRule] = field(default_factory=list)
    provider: str | None = None
    dry_run: bool = False
    source: str = ""

    def rule_name(self, index: int) -> str:
        """Istio's name of a rule: ``ns[<namespace>]-policy[<name>]-rule[<index>]``."""
        return f"ns[{self.namespace}]-policy[{self.name}]-rule[{index}]"


def _values(raw: Any, at: str, where: tuple[str, str], issues: PolicyIssues) -> list[str] | None:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in raw):
        issues.add(*where, at, f"expected a list of strings, got {raw!r}")
        return None
    if "" in raw:
        # Istio's CheckEmptyValues: the webhook rejects an empty value in any field.
        issues.add(*where, at, "empty value not allowed")
        return None
    return [str(v) for v in raw]


def _source(raw: Any, at: str, where: tuple[str, str], policy_ns: str, issues: PolicyIssues,
            keys: dict[str, frozenset[Any]]) -> tuple[tuple[Pred, ...], tuple[Pred, ...]] | None:
    """The source's predicates, split into (any protocol, HTTP only)."""
    if not isinstance(raw, Mapping) or set(raw) - {"source"}:
        issues.add(*where, at, f"expected {{source: {{...}}}}, got {raw!r}")
        return None
    source = raw.get("source")
    known = [*SOURCE_KEYS, *("not" + k[0].upper() + k[1:] for k in SOURCE_KEYS)]
    if not isinstance(source, Mapping) or not source:
        issues.add(*where, f"{at}.source", "a source must set at least one field")
        return None
    unknown = sorted(set(source) - set(known))
    if unknown:
        issues.add(*where, f"{at}.source.{unknown[0]}", f"unknown field (known: {', '.join(known)})")
        return None
    lists: dict[str, list[str]] = {}
    for name in known:
        got = _values(source.get(name), f"{at}.source.{name}", where, issues)
        if got is None:
            return None
        lists[name] = got
    if (lists["serviceAccounts"] or lists["notServiceAccounts"]) and (
            lists["principals"] or lists["notPrincipals"] or lists["namespaces"] or lists["notNamespaces"]):
        issues.add(*where, f"{at}.source.serviceAccounts",
                   "serviceAccounts cannot be set together with principals or namespaces")
        return None
    preds: list[Pred] = []
    http: list[Pred] = []
    try:
        add_field(preds, keys, lists["principals"], lists["notPrincipals"], string_set,
               _get("principal"), "principal")
        add_field(http, keys, lists["requestPrincipals"], lists["notRequestPrincipals"],
               request_principal_matcher, _get("jwt_identity"))
        for values, negated in ((lists["namespaces"], False), (lists["notNamespaces"], True)):
            if values:
                m = namespace_matcher(values)
                preds.append(negate(m) if negated else m)
        for values, negated in ((lists["serviceAccounts"], False), (lists["notServiceAccounts"], True)):
            if values:
                m = service_account_matcher(values, policy_ns)
                preds.append(negate(m) if negated else m)
        add_field(preds, keys, lists["ipBlocks"], lists["notIpBlocks"], ip_set, _get("source_ip"))
        add_field(preds, keys, lists["remoteIpBlocks"], lists["notRemoteIpBlocks"], ip_set,
               _get("remote_ip"))
        for values, negated in ((lists["trustDomains"], False), (lists["notTrustDomains"], True)):
            if values:
                m = trust_domain_matcher(values)
                preds.append(negate(m) if negated else m)
    except MatchError as exc:
        issues.add(*where, f"{at}.source", str(exc))
        return None
    return tuple(preds), tuple(http)


def _operation(raw: Any, at: str, where: tuple[str, str], issues: PolicyIssues,
               keys: dict[str, frozenset[Any]]) -> tuple[tuple[Pred, ...], tuple[Pred, ...]] | None:
    """The operation's predicates, split into (any protocol, HTTP only: hosts, methods, paths)."""
    if not isinstance(raw, Mapping) or set(raw) - {"operation"}:
        issues.add(*where, at, f"expected {{operation: {{...}}}}, got {raw!r}")
        return None
    operation = raw.get("operation")
    known = [*OPERATION_KEYS, *("not" + k[0].upper() + k[1:] for k in OPERATION_KEYS)]
    if not isinstance(operation, Mapping) or not operation:
        issues.add(*where, f"{at}.operation", "an operation must set at least one field")
        return None
    unknown = sorted(set(operation) - set(known))
    if unknown:
        issues.add(*where, f"{at}.operation.{unknown[0]}", f"unknown field (known: {', '.join(known)})")
        return None
    lists: dict[str, list[str]] = {}
    for name in known:
        got = _values(operation.get(name), f"{at}.operation.{name}", where, issues)
        if got is None:
            return None
        lists[name] = got
    preds: list[Pred] = []
    http: list[Pred] = []
    try:
        hosts, not_hosts = lists["hosts"], lists["notHosts"]
        if hosts:
            http.append(host_matcher(hosts))
            if all("*" not in h for h in hosts):
                keys["host"] = frozenset(h.lower() for h in hosts)
        if not_hosts:
            negated = host_matcher(not_hosts)
            http.append(negate(negated))
        add_field(preds, keys, lists["ports"], lists["notPorts"], port_set, _get("port"))
        if lists["ports"]:
            keys["port"] = frozenset(port_number(p) for p in lists["ports"])
        add_field(http, keys, lists["methods"], lists["notMethods"], header_set,
               _get("method"), "method")
        add_field(http, keys, lists["paths"], lists["notPaths"], path_set, _get("path"), "path")
    except MatchError as exc:
        issues.add(*where, f"{at}.operation", str(exc))
        return None
    return tuple(preds), tuple(http)


def _when(raw: Any, at: str, where: tuple[str, str], policy_ns: str, issues: PolicyIssues) -> Pred | None:
    if not isinstance(raw, Mapping) or set(raw) - {"key", "values", "notValues"}:
        issues.add(*where, at, f"expected {{key, values, notValues}}, got {raw!r}")
        return None
    key = raw.get("key")
    if not isinstance(key, str) or not key:
        issues.add(*where, f"{at}.key", "key is required")
        return None
    values = _values(raw.get("values"), f"{at}.values", where, issues)
    not_values = _values(raw.get("notValues"), f"{at}.notValues", where, issues)
    if values is None or not_values is None:
        return None
    if not values and not not_values:
        issues.add(*where, at, f"condition {key!r} needs values or notValues")
        return None
    preds: list[Pred] = []
    try:
        condition(key, values, not_values, policy_ns, preds)
    except MatchError as exc:
        issues.add(*where, f"{at}.key", str(exc))
        return None
    if len(preds) == 1:
        return preds[0]
    all_of = tuple(preds)
    return lambda r: all(p(r) for p in all_of)


# Preference of index keys: the most selective first.
_KEY_ORDER = ("path", "principal", "host", "port", "method")


def _rule(raw: Any, index: int, policy: CompiledPolicy, ordinal: int, where: tuple[str, str],
          issues: PolicyIssues) -> CompiledRule | None:
    at = f"spec.rules[{index}]"
    if not isinstance(raw, Mapping):
        issues.add(*where, at, f"expected a mapping, got {raw!r}")
        return None
    unknown = sorted(set(raw) - set(RULE_KEYS))
    if unknown:
        issues.add(*where, f"{at}.{unknown[0]}", f"unknown field (known: {', '.join(RULE_KEYS)})")
        return None
    before = len(issues.errors)
    froms: list[tuple[tuple[Pred, ...], tuple[Pred, ...]]] = []
    tos: list[tuple[tuple[Pred, ...], tuple[Pred, ...]]] = []
    whens: list[tuple[Pred, bool]] = []
    failed = False
    from_keys: list[dict[str, frozenset[Any]]] = []
    to_keys: list[dict[str, frozenset[Any]]] = []
    for i, item in enumerate(_list(raw.get("from"), f"{at}.from", where, issues)):
        keys: dict[str, frozenset[Any]] = {}
        source = _source(item, f"{at}.from[{i}]", where, policy.namespace, issues, keys)
        if source is None:
            failed = True
        else:
            froms.append(source)
        from_keys.append(keys)
    for i, item in enumerate(_list(raw.get("to"), f"{at}.to", where, issues)):
        keys = {}
        operation = _operation(item, f"{at}.to[{i}]", where, issues, keys)
        if operation is None:
            failed = True
        else:
            tos.append(operation)
        to_keys.append(keys)
    for i, item in enumerate(_list(raw.get("when"), f"{at}.when", where, issues)):
        key = item.get("key") if isinstance(item, Mapping) else None
        when = _when(item, f"{at}.when[{i}]", where, policy.namespace, issues)
        if when is None:
            failed = True
        else:
            whens.append((when, isinstance(key, str) and is_http_only_key(key)))
    if failed or len(issues.errors) > before:
        return None
    rule = CompiledRule(policy, index, ordinal,
                        tuple(g + h for g, h in froms) if froms else None,
                        tuple(g + h for g, h in tos) if tos else None,
                        tuple(p for p, _ in whens), _index_key(from_keys, to_keys), policy.rule_name(index))
    uses_http = (any(h for _, h in froms) or any(h for _, h in tos)
                 or any(http for _, http in whens))
    if not uses_http:
        rule.tcp = rule
    elif policy.action != "ALLOW":
        # Istio's model.Generate for TCP: a DENY, AUDIT (and CUSTOM) rule ignores its HTTP-only
        # values ("missing attributes are treated as matches"), a wider rule.
        tcp_keys = [{k: v for k, v in keys.items() if k not in _HTTP_KEYS} for keys in to_keys]
        rule.tcp = CompiledRule(policy, index, ordinal,
                                tuple(g for g, _ in froms) if froms else None,
                                tuple(g for g, _ in tos) if tos else None,
                                tuple(p for p, http in whens if not http), _index_key(from_keys, tcp_keys),
                                rule.name)
        rule.tcp.tcp = rule.tcp
    # else: an ALLOW rule with an HTTP-only field is skipped on TCP (a narrower allow).
    return rule


# Index keys of fields that only exist in HTTP requests.
_HTTP_KEYS = ("path", "host", "method")


def _index_key(from_keys: list[dict[str, frozenset[Any]]],
               to_keys: list[dict[str, frozenset[Any]]]) -> tuple[str, frozenset[Any]] | None:
    """A field every alternative constrains to exact values: the rule matches only those values."""
    for name in _KEY_ORDER:
        groups = from_keys if name == "principal" else to_keys
        if groups and all(name in g for g in groups):
            return name, frozenset().union(*(g[name] for g in groups))
    return None


def _list(raw: Any, at: str, where: tuple[str, str], issues: PolicyIssues) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        issues.add(*where, at, f"expected a list, got {raw!r}")
        return []
    return raw


# Istio's webhook (ValidateAuthorizationPolicy): fields and keys a CUSTOM rule may not use.
_CUSTOM_SOURCE_FIELDS = ("namespaces", "notNamespaces", "serviceAccounts", "notServiceAccounts", "trustDomains",
                         "notTrustDomains", "principals", "notPrincipals", "requestPrincipals",
                         "notRequestPrincipals")
_CUSTOM_WHEN_KEYS = ("source.namespace", "source.serviceAccount", "source.trustDomain", "source.principal")


def _webhook_rules_check(spec: Mapping[str, Any], action: str, where: tuple[str, str],
                         issues: PolicyIssues) -> bool:
    """Istio's webhook rules on actions: DENY and CUSTOM need ``rules``; CUSTOM rules match no identity."""
    rules = spec.get("rules")
    if action in ("DENY", "CUSTOM") and rules is None:
        issues.add(*where, "spec.rules", f"{action} action without `rules` is meaningless as it will never be"
                                         " triggered, add an empty rule `{}` if you want it be triggered for"
                                         " every request")
        return False
    if action != "CUSTOM" or not isinstance(rules, list):
        return True
    for i, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            continue
        for j, item in enumerate(rule.get("from") or ()):
            source = item.get("source") if isinstance(item, Mapping) else None
            for name in _CUSTOM_SOURCE_FIELDS:
                if isinstance(source, Mapping) and source.get(name):
                    issues.add(*where, f"spec.rules[{i}].from[{j}].source.{name}",
                               "currently not supported with CUSTOM action (Istio's webhook rejects it)")
                    return False
        for j, cond in enumerate(rule.get("when") or ()):
            key = cond.get("key") if isinstance(cond, Mapping) else None
            if isinstance(key, str) and (key in _CUSTOM_WHEN_KEYS or key.startswith("request.auth.")):
                issues.add(*where, f"spec.rules[{i}].when[{j}].key",
                           f"{key} is currently not supported with CUSTOM action (Istio's webhook rejects it)")
                return False
    return True


def parse_bool(text: Any) -> bool | None:
    """Go's ``strconv.ParseBool``; None when the text is none of its spellings."""
    if isinstance(text, bool):
        return text
    value = str(text).strip()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def is_authorization_policy(doc: Mapping[str, Any]) -> bool:
    """True for an Istio AuthorizationPolicy document (any security.istio.io version)."""
    api = doc.get("apiVersion")
    return doc.get("kind") == KIND and isinstance(api, str) and api.startswith(API_GROUP)


def parse_policy(doc: Mapping[str, Any], first_ordinal: int, issues: PolicyIssues,
                 log: Any = None) -> CompiledPolicy | None:
    """Compile one AuthorizationPolicy document; errors go to ``issues`` and give None."""
    file = str(doc.get("_source", ""))
    meta = doc.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, Mapping) else None
    namespace = (meta.get("namespace") if isinstance(meta, Mapping) else None) or "default"
    where = (file, f"{KIND}/{name}.{namespace}")
    if not isinstance(name, str) or not name:
        issues.add(*where, "metadata.name", "a policy needs a name")
        return None
    spec = doc.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        issues.add(*where, "spec", f"expected a mapping, got {spec!r}")
        return None
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        issues.add(*where, f"spec.{unknown[0]}", f"unknown field (known: {', '.join(SPEC_KEYS)})")
        return None
    if spec.get("targetRef") or spec.get("targetRefs"):
        if spec.get("selector"):
            issues.add(*where, "spec.selector", "at most one of selector and targetRef/targetRefs can be set")
            return None
        # A policy attached to a Gateway (or waypoint) never applies to a sidecar's workload.
        if log is not None:
            log.warning("%s %s: targetRef/targetRefs attach the policy to a gateway, not to this sidecar's"
                        " workloads; the policy is ignored", file, where[1])
        return None
    action = spec.get("action") or "ALLOW"
    if action not in ACTIONS:
        issues.add(*where, "spec.action", f"expected one of {', '.join(ACTIONS)}, got {action!r}")
        return None
    provider = spec.get("provider")
    provider_name = provider.get("name") if isinstance(provider, Mapping) else None
    if action == "CUSTOM" and not provider_name:
        issues.add(*where, "spec.provider.name", "a CUSTOM policy needs provider.name")
        return None
    if action != "CUSTOM" and provider is not None:
        issues.add(*where, "spec.provider", f"provider is only allowed with action CUSTOM, not {action}")
        return None
    if not _webhook_rules_check(spec, action, where, issues):
        return None
    selector = spec.get("selector") or {}
    labels = selector.get("matchLabels") if isinstance(selector, Mapping) else None
    if not isinstance(selector, Mapping) or set(selector) - {"matchLabels"} or not isinstance(labels or {}, Mapping):
        issues.add(*where, "spec.selector", f"expected {{matchLabels: {{label: value}}}}, got {selector!r}")
        return None
    dry_run = False
    annotations = meta.get("annotations") or {}
    if isinstance(annotations, Mapping) and DRY_RUN in annotations:
        parsed = parse_bool(annotations[DRY_RUN])
        if parsed is None and log is not None:
            log.error("%s %s: the value of %s is not a boolean (%r); the policy is enforced",
                      file, where[1], DRY_RUN, annotations[DRY_RUN])
        dry_run = bool(parsed)
    policy = CompiledPolicy(namespace, name, action, {str(k): str(v) for k, v in (labels or {}).items()},
                            provider=provider_name, dry_run=dry_run, source=file)
    before = len(issues.errors)
    rules = _list(spec.get("rules"), "spec.rules", where, issues)
    for index, raw in enumerate(rules):
        if raw is None:
            # Istio skips a nil rule (it matches nothing).
            if log is not None:
                log.warning("%s %s: skipped nil rule %s", file, where[1], policy.rule_name(index))
            continue
        rule = _rule(raw, index, policy, first_ordinal + index, where, issues)
        if rule is not None:
            policy.rules.append(rule)
    return policy if len(issues.errors) == before else None


__all__ = ["ACTIONS", "CompiledPolicy", "CompiledRule", "PolicyIssues", "SUPPORTED_KEYS",
           "is_authorization_policy", "parse_bool", "parse_policy"]
