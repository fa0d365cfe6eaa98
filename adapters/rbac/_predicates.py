"""Predicates over a request: what each field of a rule and each ``when`` key compiles to.

A predicate takes a :class:`~adapters.rbac._request.RequestView` and answers True or
False. Istio's generator (``pilot/pkg/security/authz/model/generator.go``) decides
how each field matches: principals compare with the ``spiffe://`` prefix, namespaces
and service accounts match the peer principal by pattern, request principals split
``iss/sub`` at the last ``/``, audiences, presenter and claims match any element of a
list claim, headers use Envoy's header matcher (``*`` is presence), hosts compare
case-insensitively. Values are OR-ed and ``not`` values negated (:func:`add_field`).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter as _get
from typing import Any

from policy import compile_regex, regex_escape

from adapters.rbac._match import (
    MatchError,
    StringSet,
    bracket_names,
    header_set,
    ip_set,
    port_set,
    string_set,
)
from adapters.rbac._request import RequestView

Pred = Callable[[RequestView], bool]


def exact_values(matcher: Any) -> frozenset[str] | None:
    """The value set of a matcher that only compares exactly and case-sensitively, else None."""
    strings = getattr(matcher, "strings", matcher)
    if isinstance(strings, StringSet) and not strings.fold and getattr(matcher, "only_exact", False):
        return strings.exact
    return None



def negate(pred: Pred) -> Pred:
    """The predicate that holds where ``pred`` does not."""
    return lambda r: not pred(r)


def add_field(preds: list[Pred], key_out: dict[str, frozenset[Any]], values: list[str],
           not_values: list[str], make: Callable[[list[str]], Callable[[Any], bool]],
           get: Callable[[RequestView], Any], index_as: str | None = None) -> None:
    """Append the predicates of one field (values OR-ed, not-values negated)."""
    if values:
        matcher = make(values)
        exact = exact_values(matcher)
        if exact is not None:
            # The common case: a set membership test, no matcher call.
            preds.append(lambda r: get(r) in exact)
        else:
            preds.append(lambda r: matcher(get(r)))
        if index_as is not None and getattr(matcher, "only_exact", False):
            key_out[index_as] = frozenset(values)
    if not_values:
        not_matcher = make(not_values)
        preds.append(lambda r: not not_matcher(get(r)))


def namespace_matcher(values: list[str]) -> Callable[[RequestView], bool]:
    """Match the request's namespace as Istio does: on the peer principal (``.*/ns/<value>/.*``, ``*`` any)."""
    regexes = [compile_regex(".*/ns/" + ".*".join(regex_escape(p) for p in v.split("*")) + "/.*") for v in values]
    fallback = string_set(values)

    def match(r: RequestView) -> bool:
        if r.principal:
            return any(x.fullmatch(r.principal) for x in regexes)
        return fallback(r.namespace)

    return match


def service_account_matcher(values: list[str], default_ns: str) -> Callable[[RequestView], bool]:
    """Istio's ``serviceAccounts`` / ``source.serviceAccount``: ``[<namespace>/]<account>`` of the peer.

    Values are checked as Istio's ``CheckServiceAccount`` does (no wildcard, at most one
    ``/``, no empty part, at most 16 values of at most 320 characters).
    """
    if len(values) > 16:
        raise MatchError("serviceAccounts may not have more than 16 values")
    regexes = []
    for value in values:
        if "*" in value:
            raise MatchError(f"wildcard not allowed in a service account: {value!r}")
        if len(value) > 320 or value.count("/") > 1 or value.startswith("/") or value.endswith("/"):
            raise MatchError(f"expected 'serviceAccount' or 'namespace/serviceAccount' (at most 320"
                             f" characters), found {value!r}")
        ns, sep, sa = value.partition("/")
        if not sep:
            ns, sa = default_ns, value
        regexes.append(compile_regex(f"spiffe://.+/ns/{regex_escape(ns)}/(.+/|)sa/{regex_escape(sa)}(/.+)?"))

    def match(r: RequestView) -> bool:
        return r.uri_principal is not None and any(x.fullmatch(r.uri_principal) for x in regexes)

    return match


def request_principal_matcher(values: list[str]) -> Callable[[tuple[str, str] | None], bool]:
    """Istio's ``iss/sub`` matching: the policy value splits at its last ``/``, each half compares
    with the JWT's ``iss`` and ``sub`` claims; ``*`` halves mean any non-empty value."""
    pairs = []
    for value in values:
        idx = value.rfind("/")
        found = idx >= 0
        iss, sub = (value[:idx], value[idx + 1:]) if found else (value, "")
        if value == "*":
            pairs.append((string_set(["*"]), string_set(["*"])))
        elif value.startswith("*"):
            if found:
                pairs.append((string_set(["*" if iss == "*" else iss]), string_set([sub], exact_only=True)))
            else:
                pairs.append((string_set(["*"]), string_set([value])))
        elif value.endswith("*"):
            if found:
                # Istio: the sub is a prefix match of sub[:-1], taken literally (a leading "*" too).
                sub_match = string_set(["*"]) if sub == "*" else StringSet(prefixes=(sub[:-1],))
                pairs.append((string_set([iss], exact_only=True), sub_match))
            else:
                pairs.append((string_set([value]), string_set(["*"])))
        else:
            pairs.append((string_set([iss], exact_only=True), string_set([sub], exact_only=True)))

    def match(identity: tuple[str, str] | None) -> bool:
        if identity is None:
            return False
        iss, sub = identity
        return any(mi(iss) and ms(sub) for mi, ms in pairs)

    return match


def trust_domain_matcher(values: list[str]) -> Callable[[RequestView], bool]:
    """Istio's ``trustDomains`` / ``source.trustDomain``: the peer's SPIFFE trust domain.

    ``*`` is any peer principal, ``td`` the prefix ``spiffe://td/``, and one ``*`` at the start
    or end of the value matches within the trust domain (never across a ``/``).
    """
    regexes = []
    for value in values:
        if not value:
            raise MatchError("empty value not allowed in trustDomains")
        if "/" in value:
            raise MatchError(f"trust domain must not contain '/': {value!r}")
        stars = value.count("*")
        if stars > 1 or (stars == 1 and value != "*" and not (value.startswith("*") or value.endswith("*"))):
            raise MatchError(f"a trust domain allows one '*', at the start or end only: {value!r}")
        if value == "*":
            regexes.append(compile_regex(r"(?s)spiffe://.*"))
        else:
            head, _, tail = value.partition("*")
            middle = "[^/]*" if stars else ""
            regexes.append(compile_regex(f"(?s)spiffe://{regex_escape(head)}{middle}{regex_escape(tail)}/.*"))

    def match(r: RequestView) -> bool:
        return r.uri_principal is not None and any(x.fullmatch(r.uri_principal) for x in regexes)

    return match


#: ``when`` keys Istio accepts but that have no meaning here, with the reason (rejected at load).
_UNSUPPORTED_KEYS = {
    "destination.namespace": "Istio replaces it by the policy's metadata.namespace",
    "destination.labels": "Istio replaces it by the workload selector",
    "destination.name": "deprecated, only supported by Mixer's v1alpha1 RBAC",
    "destination.user": "deprecated, only supported by Mixer's v1alpha1 RBAC",
}


def is_http_only_key(key: str) -> bool:
    """True for ``when`` keys Istio cannot evaluate on a TCP connection (``request.*``)."""
    return key.startswith("request.")


def any_of(values: list[str]) -> Callable[[list[str]], bool]:
    """True for a list with at least one element that one of ``values`` matches (Istio's string forms)."""
    matcher = string_set(values)
    return lambda found: any(matcher(v) for v in found)


def condition(key: str, values: list[str], not_values: list[str], policy_ns: str,
               preds: list[Pred]) -> None:
    """Compile one ``when`` condition; raise MatchError for an unknown or malformed key."""
    ignore: dict[str, frozenset[Any]] = {}
    if key.startswith("request.headers"):
        (name,) = _one_name(key, "request.headers")
        add_field(preds, ignore, values, not_values, header_set, lambda r: r.header(name))
    elif key.startswith("request.auth.claims"):
        path = bracket_names(key[len("request.auth.claims"):], key)
        add_field(preds, ignore, values, not_values, any_of, lambda r: r.claim_strings(path))
    elif key in _SIMPLE_CONDITIONS:
        make, get = _SIMPLE_CONDITIONS[key]
        add_field(preds, ignore, values, not_values, make, get)
    elif key == "source.trustDomain":
        if values:
            preds.append(trust_domain_matcher(values))
        if not_values:
            negated_td = trust_domain_matcher(not_values)
            preds.append(lambda r: not negated_td(r))
    elif key.startswith("experimental.envoy.filters."):
        raise MatchError(f"{key!r} is not supported: Envoy filter metadata does not reach this service")
    elif key in _UNSUPPORTED_KEYS or key.startswith("destination.labels["):
        reason = _UNSUPPORTED_KEYS.get(key, _UNSUPPORTED_KEYS["destination.labels"])
        raise MatchError(f"{key!r} is not supported ({reason})")
    elif key in ("source.namespace", "source.serviceAccount"):
        if key == "source.namespace":
            make_ns: Callable[[list[str]], Pred] = namespace_matcher
        else:
            make_ns = lambda v: service_account_matcher(v, policy_ns)  # noqa: E731
        if values:
            preds.append(make_ns(values))
        if not_values:
            negated = make_ns(not_values)
            preds.append(lambda r: not negated(r))
    else:
        raise MatchError(f"unknown attribute {key!r} (supported: {', '.join(SUPPORTED_KEYS)})")


def _one_name(key: str, attribute: str) -> list[str]:
    names = bracket_names(key[len(attribute):], key)
    if len(names) != 1:
        raise MatchError(f"{key!r}: expected exactly one [name]")
    return names


_SIMPLE_CONDITIONS: dict[str, tuple[Callable[[list[str]], Any], Callable[[RequestView], Any]]] = {
    "source.ip": (ip_set, _get("source_ip")),
    "remote.ip": (ip_set, _get("remote_ip")),
    "source.principal": (string_set, _get("principal")),
    "request.auth.principal": (request_principal_matcher, _get("jwt_identity")),
    "request.auth.audiences": (any_of, lambda r: r.audiences()),
    "request.auth.presenter": (any_of, lambda r: r.presenter()),
    "destination.ip": (ip_set, _get("destination_ip")),
    "destination.port": (port_set, _get("port")),
    "connection.sni": (string_set, _get("sni")),
}

SUPPORTED_KEYS = (
    "request.headers[<name>]", "source.ip", "remote.ip", "source.namespace", "source.principal",
    "source.serviceAccount", "source.trustDomain", "request.auth.principal", "request.auth.audiences",
    "request.auth.presenter", "request.auth.claims[<name>]...", "destination.ip", "destination.port",
    "connection.sni",
)


def _has_port(value: str) -> bool:
    return ":" in value.rsplit("]", 1)[-1]


def host_matcher(values: list[str]) -> Callable[[RequestView], bool]:
    """Hosts compare case-insensitively; a value without a port matches the host with any port."""
    exact = string_set(values, fold=True)
    portless = string_set([v for v in values if not _has_port(v)], fold=True)

    def match(r: RequestView) -> bool:
        if exact(r.host):
            return True
        return r.host_no_port != r.host and portless(r.host_no_port)

    return match


__all__ = [
    "Pred", "SUPPORTED_KEYS", "add_field", "any_of", "condition", "exact_values", "host_matcher",
    "is_http_only_key", "namespace_matcher", "request_principal_matcher", "service_account_matcher",
    "trust_domain_matcher",
]
