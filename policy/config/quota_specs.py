"""Mixer's ``QuotaSpec`` and ``QuotaSpecBinding`` (``config.istio.io/v1alpha2``): quotas charged per request.

Mixer's proxies decided which quotas a request charged (``mixer/v1/config/client/quota.proto``);
with Envoy's ext_authz there is no such client, so this service evaluates them itself on
each ext_authz check and hands the charges to the dispatcher's quota path::

    kind: QuotaSpec                       kind: QuotaSpecBinding
    metadata: {name: request-count}       metadata: {name: request-count}
    spec:                                 spec:
      rules:                                quotaSpecs: [{name: request-count}]
      - match:                              services: [{name: books, namespace: shop}]
        - clause:
            request.method: {exact: POST}
            request.path: {prefix: /books}
        quotas:
        - {quota: requestcount, charge: 2}

Semantics, following Mixer's client and Istio's pilot (``QuotaSpecByDestination``):

* A rule matches when its ``match`` list is empty or **any** of its clauses matches; a clause
  matches when **all** its conditions do. ``exact`` compares, ``prefix`` is a prefix test and
  ``regex`` must match the whole value (Envoy's client used ECMAScript regexes; here RE2, in
  linear time: a pattern RE2 cannot compile, such as a backreference or lookahead, is a
  config error, never a different match). A
  condition on an absent attribute does not match. Conditions name STRING attributes of the
  vocabulary (Mixer's old ``request.http_method`` is read as ``request.method``).
* A binding applies a spec to a request when one of its ``services`` matches the request's
  destination host: ``destination.service.host``, else ``request.host`` (the authority Envoy
  saw), a ``:port`` suffix ignored. ``service: "*"`` matches every request, ``service:
  "*.ns.*"`` every host in namespace ``ns``; ``service: fqdn`` that host; ``name`` (with the
  binding's namespace unless ``namespace`` is given, and ``domain`` defaulting to
  ``cluster.local``) matches ``name.ns``, ``name.ns.svc`` and ``name.ns.svc.<domain>``.
  ``labels`` are not matched (Istio ignored them too).
* Spec references default to the binding's namespace; a reference to a spec that does not
  exist is a config error. ``charge`` defaults to 1 (0 also means 1; negative is an error).
  Quotas named by several matching rules are charged the sum of their charges, once.

The charges go to the quota instances of the rules that match the request
(:meth:`Dispatcher.check <policy.runtime.dispatch.Dispatcher.check>`), with the
request's ``request.id`` as deduplication id, so a retried check is not charged twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policy.attributes import ValueType, Vocabulary
from policy.config.model import ExtraDocument
from policy.config.shape import Reporter, Where, describe, key_part, mapping, name_text, sequence
from policy.expr import AttributeNotFound, CompiledExpression, ExpressionError, compile_expression
from policy.expr.regex import RegexError, compile_regex
from policy.expr.regex import escape as regex_escape
from policy.config.snapshot import QuotaBinding
from policy.sdk import QuotaArgs

__all__ = ["QUOTA_SPEC_KINDS", "QuotaMatch", "binding_quotas", "compile_quota_bindings"]

MIXER_API_VERSION = "config.istio.io/v1alpha2"
QUOTA_SPEC, QUOTA_SPEC_BINDING = "QuotaSpec", "QuotaSpecBinding"
#: The Mixer kinds this module reads.
QUOTA_SPEC_KINDS = frozenset({QUOTA_SPEC, QUOTA_SPEC_BINDING})
#: Attribute names of Mixer's client config that the vocabulary spells differently.
ATTRIBUTE_ALIASES = {"request.http_method": "request.method"}
_HOST = "(destination.service.host | request.host)"
_MATCH_KINDS = ("exact", "prefix", "regex")


def _quote(text: str) -> str:
    # JSON's escapes are a subset of the expression language's (Go's) string escapes.
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True, eq=False)
class QuotaMatch:
    """When a quota is charged: a destination service condition and any-of clauses.

    Quacks like a :class:`~policy.expr.CompiledExpression` (``evaluate``, ``referenced``,
    ``text``) so it fits :attr:`QuotaBinding.match`; each clause is evaluated on its own so
    an absent attribute only fails the clause that reads it.
    """

    service: CompiledExpression | None
    clauses: tuple[CompiledExpression, ...]
    text: str

    @property
    def referenced(self) -> frozenset[tuple[str, str | None]]:
        """Every attribute the match may read."""
        parts = [self.service, *self.clauses]
        return frozenset().union(*(p.referenced for p in parts if p is not None))

    def evaluate(self, bag: Any) -> bool:
        """True when the service condition holds and (there are no clauses or) one clause does."""
        if self.service is not None and not _holds(self.service, bag):
            return False
        if not self.clauses:
            return True
        return any(_holds(clause, bag) for clause in self.clauses)


def _holds(expression: CompiledExpression, bag: Any) -> bool:
    try:
        return expression.evaluate(bag) is True
    except AttributeNotFound:
        return False


def binding_quotas(bindings: Sequence[QuotaBinding], bag: Any, deduplication_id: str = "") -> dict[str, QuotaArgs]:
    """The quotas a request charges: the sum of the charges of every binding that matches it."""
    charges: dict[str, int] = {}
    for binding in bindings:
        if binding.match is None or binding.match.evaluate(bag):
            charges[binding.quota] = charges.get(binding.quota, 0) + binding.charge
    return {name: QuotaArgs(name, amount, False, deduplication_id) for name, amount in charges.items()}


# --- parsing -------------------------------------------------------------------------------------


@dataclass
class _Spec:
    name: str
    namespace: str
    where: Where
    rules: list[tuple[list[str], list[tuple[str, int]]]]  # (clause texts, [(quota, charge)])
    bound: bool = False


def _metadata(doc: ExtraDocument, where: Where, reporter: Reporter, root: str) -> tuple[str, str] | None:
    meta = doc.data.get("metadata")
    if not isinstance(meta, Mapping):
        reporter.error(where.at("metadata"), f"expected a mapping with a name, got {describe(meta)}")
        return None
    name = name_text(meta.get("name"), where.at("metadata", "name"), reporter)
    namespace = name_text(meta.get("namespace"), where.at("metadata", "namespace"), reporter,
                          what="a namespace", required=False) or root
    return (name, namespace) if name else None


def _condition(attribute: Any, match: Any, at: Where, vocabulary: Vocabulary, reporter: Reporter) -> str | None:
    name = ATTRIBUTE_ALIASES.get(str(attribute), str(attribute))
    value_type = vocabulary.get(name)
    if value_type is not ValueType.STRING:
        what = "is not in the vocabulary" if value_type is None else f"is {value_type.name}, not STRING"
        reporter.error(at, f"attribute {attribute!r} {what}; quota clauses compare STRING attributes")
        return None
    spec = mapping(match, at, reporter, _MATCH_KINDS, optional=False)
    if spec is None:
        return None
    given = [k for k in _MATCH_KINDS if spec.get(k) is not None]
    if len(given) != 1:
        reporter.error(at, f"give exactly one of exact, prefix or regex, got {', '.join(given) or 'none'}")
        return None
    kind, value = given[0], spec[given[0]]
    if not isinstance(value, str):
        reporter.error(at.at(kind), f"expected a string, got {describe(value)}")
        return None
    if kind == "exact":
        return f"{name} == {_quote(value)}"
    if kind == "prefix":
        return f"{name}.startsWith({_quote(value)})"
    try:
        compile_regex(value)
    except RegexError as exc:
        reporter.error(at.at(kind), f"not a valid regular expression (RE2 syntax): {exc}")
        return None
    return f"{_quote(f'^(?:{value})$')}.matches({name})"


def _rules(raw: Any, at: Where, vocabulary: Vocabulary, reporter: Reporter) -> list[tuple[list[str], list[tuple[str, int]]]]:
    out = []
    for i, rule in enumerate(sequence(raw, at, reporter) or []):
        rule_at = at.at(i)
        body = mapping(rule, rule_at, reporter, ("match", "quotas"), optional=False)
        if body is None:
            continue
        clauses = []
        for j, item in enumerate(sequence(body.get("match"), rule_at.at("match"), reporter) or []):
            match_at = rule_at.at("match", j)
            entry = mapping(item, match_at, reporter, ("clause",), optional=False)
            clause = mapping(entry.get("clause") if entry else None, match_at.at("clause"), reporter,
                             optional=False) if entry is not None else None
            if clause is None:
                continue
            conditions = [_condition(attr, cond, match_at.at("clause", key_part(attr)), vocabulary, reporter)
                          for attr, cond in clause.items()]
            if conditions and all(c is not None for c in conditions):
                clauses.append(" && ".join(conditions))
        quotas = []
        for j, item in enumerate(sequence(body.get("quotas"), rule_at.at("quotas"), reporter) or []):
            quota_at = rule_at.at("quotas", j)
            entry = mapping(item, quota_at, reporter, ("quota", "charge"), optional=False)
            if entry is None:
                continue
            quota = name_text(entry.get("quota"), quota_at.at("quota"), reporter, what="a quota name")
            charge = entry.get("charge", 1)
            if isinstance(charge, bool) or not isinstance(charge, int) or charge < 0:
                reporter.error(quota_at.at("charge"), f"expected a whole number >= 0, got {describe(charge)}")
                continue
            if quota:
                quotas.append((quota, charge or 1))
        out.append((clauses, quotas))
    return out


def _service_condition(service: Mapping[str, Any], at: Where, binding_ns: str, reporter: Reporter) -> str | None:
    """A regex over the destination host for one IstioService; '' means every request."""
    if service.get("labels"):
        reporter.warn(at.at("labels"), "labels are not matched (as in Istio); the service matches by host")
    fqdn = service.get("service")
    if fqdn is not None:
        if not isinstance(fqdn, str) or not fqdn:
            reporter.error(at.at("service"), f"expected a host name, got {describe(fqdn)}")
            return None
        if fqdn == "*":
            return ""
        if fqdn.startswith("*") and fqdn.endswith("*") and len(fqdn) > 2:
            return rf"{regex_escape(fqdn[1:-1].rstrip('.'))}(\.|:|$)"
        if "*" in fqdn:
            reporter.error(at.at("service"), f"only '*' and '*.<namespace>.*' wildcards are allowed, got {fqdn!r}")
            return None
        return rf"^{regex_escape(fqdn)}(:[0-9]+)?$"
    name = name_text(service.get("name"), at.at("name"), reporter, what="a service name (or service)")
    if name is None:
        return None
    namespace = service.get("namespace") or binding_ns
    domain = service.get("domain") or "cluster.local"
    return (rf"^{regex_escape(name)}\.{regex_escape(str(namespace))}(\.svc(\.{regex_escape(str(domain))})?)?"
            r"(:[0-9]+)?$")


def _compile(text: str, at: Where, vocabulary: Vocabulary, reporter: Reporter) -> CompiledExpression | None:
    try:
        return compile_expression(text, vocabulary, expected=ValueType.BOOL)
    except ExpressionError as exc:
        reporter.error(at, str(exc))
        return None


def compile_quota_bindings(extras: Iterable[ExtraDocument], vocabulary: Vocabulary, reporter: Reporter,
                           root_namespace: str) -> list[QuotaBinding]:
    """Read every QuotaSpec and QuotaSpecBinding among ``extras`` into :class:`QuotaBinding` records.

    Problems are reported to ``reporter`` (file, document, field); a spec no binding uses
    is a warning.
    """
    specs: dict[tuple[str, str], _Spec] = {}
    bindings: list[tuple[ExtraDocument, Where, str]] = []
    for doc in extras:
        if doc.data.get("apiVersion") != MIXER_API_VERSION or doc.data.get("kind") not in QUOTA_SPEC_KINDS:
            continue
        where = Where(doc.file, doc.document)
        meta = _metadata(doc, where, reporter, root_namespace)
        spec = mapping(doc.data.get("spec"), where.at("spec"), reporter,
                       ("rules",) if doc.data["kind"] == QUOTA_SPEC else ("services", "quotaSpecs"))
        if meta is None or spec is None:
            continue
        if doc.data["kind"] == QUOTA_SPEC:
            if meta in specs:
                reporter.error(where.at("metadata", "name"),
                               f"duplicate QuotaSpec {meta[0]}.{meta[1]}: already in {specs[meta].where.file}")
                continue
            specs[meta] = _Spec(meta[0], meta[1], where,
                                _rules(spec.get("rules"), where.at("spec", "rules"), vocabulary, reporter))
        else:
            bindings.append((doc, where, meta[1]))
    out: list[QuotaBinding] = []
    for doc, where, namespace in bindings:
        out.extend(_binding(doc, where, namespace, specs, vocabulary, reporter))
    for spec in specs.values():
        if not spec.bound:
            reporter.warn(spec.where, f"QuotaSpec {spec.name}.{spec.namespace} is not bound by any"
                                      " QuotaSpecBinding; it charges nothing")
    return out


def _binding(doc: ExtraDocument, where: Where, namespace: str, specs: dict[tuple[str, str], _Spec],
             vocabulary: Vocabulary, reporter: Reporter) -> list[QuotaBinding]:
    spec = doc.data.get("spec") or {}
    services_at, refs_at = where.at("spec", "services"), where.at("spec", "quotaSpecs")
    patterns: list[str] = []
    services = sequence(spec.get("services"), services_at, reporter) or []
    if not services:
        reporter.error(services_at, "at least one service is required")
    for i, item in enumerate(services):
        entry = mapping(item, services_at.at(i), reporter, ("name", "namespace", "domain", "service", "labels"),
                        optional=False)
        pattern = None if entry is None else _service_condition(entry, services_at.at(i), namespace, reporter)
        if pattern is not None:
            patterns.append(pattern)
    refs = sequence(spec.get("quotaSpecs"), refs_at, reporter) or []
    if not refs:
        reporter.error(refs_at, "at least one QuotaSpec reference is required")
    bound: list[_Spec] = []
    for i, item in enumerate(refs):
        entry = mapping(item, refs_at.at(i), reporter, ("name", "namespace"), optional=False)
        name = None if entry is None else name_text(entry.get("name"), refs_at.at(i, "name"), reporter)
        if name is None:
            continue
        key = (name, str(entry.get("namespace") or namespace))
        found = specs.get(key)
        if found is None:
            known = ", ".join(f"{n}.{ns}" for n, ns in specs) or "none"
            reporter.error(refs_at.at(i), f"QuotaSpec {key[0]}.{key[1]} not found (QuotaSpecs: {known})")
            continue
        found.bound = True
        bound.append(found)
    if not patterns or not bound:
        return []
    service_text = None if "" in patterns else " || ".join(f"{_quote(p)}.matches({_HOST})" for p in patterns)
    service = None if service_text is None else _compile(service_text, services_at, vocabulary, reporter)
    out = []
    for quota_spec in bound:
        for index, (clause_texts, quotas) in enumerate(quota_spec.rules):
            at = quota_spec.where.at("spec", "rules", index)
            clauses = tuple(c for c in (_compile(t, at, vocabulary, reporter) for t in clause_texts) if c is not None)
            text = " && ".join(f"({t})" for t in filter(None, [service_text, " || ".join(
                f"({c})" for c in clause_texts)]))
            match = None if service is None and not clauses else QuotaMatch(service, clauses, text or "true")
            out.extend(QuotaBinding(quota, charge, match, source=doc.file) for quota, charge in quotas)
    return out
