"""Value matchers with Istio's AuthorizationPolicy string semantics, compiled once per policy load.

Every string field of a rule supports four forms (``security/v1beta1/authorization.proto``):
exact ``"abc"``, prefix ``"abc*"``, suffix ``"*abc"`` and presence ``"*"`` (any non-empty
value). Paths also accept URI templates: ``{*}`` is one path segment, ``{**}`` any number
of them and must come last (Envoy's ``uri_template`` matcher, which Istio generates).
A list of values matches when any of them does; the compiled matchers below fold the
list into sets and tuples so matching one request costs one or two C-level calls.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from policy import Regex, compile_regex, regex_escape

#: Characters Envoy's URI template accepts in a path segment (RFC 3986 pchar, minus ``/``).
_SEGMENT = r"[A-Za-z0-9\-._~%!$&'()+,;:@=]"
MATCH_ONE = "{*}"
MATCH_ANY = "{**}"


class MatchError(ValueError):
    """A rule value that cannot be compiled (bad CIDR, port, template, key); the message says which."""


@dataclass(frozen=True, slots=True)
class StringSet:
    """A compiled list of exact / prefix / suffix / presence patterns.

    :param exact: values matched exactly.
    :param prefixes: ``abc*`` patterns, without the ``*``.
    :param suffixes: ``*abc`` patterns, without the ``*``.
    :param presence: ``*`` was given: any non-empty value matches.
    :param fold: values are compared case-insensitively (patterns are stored lower-case).
    """

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    presence: bool = False
    fold: bool = False

    def __call__(self, value: str | None) -> bool:
        if not value:
            # Envoy's matchers never match an absent value; the empty string only matches exactly.
            return value == "" and "" in self.exact
        if self.fold:
            value = value.lower()
        if self.presence or value in self.exact:
            return True
        if self.prefixes and value.startswith(self.prefixes):
            return True
        return bool(self.suffixes) and value.endswith(self.suffixes)

    @property
    def only_exact(self) -> bool:
        """True when every pattern is an exact value (the rule can then be indexed by them)."""
        return not (self.prefixes or self.suffixes or self.presence)


def string_set(values: Iterable[str], *, fold: bool = False, exact_only: bool = False) -> StringSet:
    """Compile Istio string patterns (exact, ``prefix*``, ``*suffix``, ``*``); with ``exact_only``
    every value is compared exactly, ``*`` included."""
    exact: set[str] = set()
    prefixes: list[str] = []
    suffixes: list[str] = []
    presence = False
    for raw in values:
        value = raw.lower() if fold else raw
        if exact_only:
            exact.add(value)
        elif value == "*":
            presence = True
        elif value.startswith("*"):
            suffixes.append(value[1:])
        elif value.endswith("*"):
            prefixes.append(value[:-1])
        else:
            exact.add(value)
    return StringSet(_intern(frozenset(exact)), tuple(prefixes), tuple(suffixes), presence, fold)


# Policies often repeat one list (the principals of a role, the methods GET and HEAD): one
# shared set per distinct list keeps the rules' working set small enough for the CPU caches.
_INTERNED: dict[frozenset[str], frozenset[str]] = {}


def _intern(values: frozenset[str]) -> frozenset[str]:
    if len(_INTERNED) > 100_000:
        _INTERNED.clear()
    return _INTERNED.setdefault(values, values)


@dataclass(frozen=True, slots=True)
class HeaderSet:
    """Envoy's header matcher: like :class:`StringSet`, but ``*`` means "header present" (even empty)."""

    strings: StringSet

    def __call__(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.strings.presence:
            return True
        return self.strings(value)

    @property
    def only_exact(self) -> bool:
        """True when every pattern is an exact value."""
        return self.strings.only_exact


def header_set(values: Iterable[str]) -> HeaderSet:
    """Compile header value patterns."""
    return HeaderSet(string_set(values))


def is_path_template(value: str) -> bool:
    """True when a path uses ``{*}`` or ``{**}``."""
    return MATCH_ONE in value or MATCH_ANY in value


def path_template(value: str) -> Regex:
    """Compile a path template into a full-match regex; raise MatchError for a malformed one.

    Istio's ``CheckValidPathTemplate`` rules: ``{*}`` and ``{**}`` are whole segments, no
    operator follows ``{**}`` (literal segments may), other segments are RFC 3986 pchars
    without ``*``. Envoy's ``uri_template`` regexes: ``{*}`` one non-empty segment, ``{**}``
    any run of pchars and ``/`` (possibly empty).
    """
    if not value.startswith("/"):
        raise MatchError(f"path template {value!r} must start with '/'")
    segments = value[1:].split("/")
    parts = []
    seen_any = False
    for segment in segments:
        if segment in (MATCH_ONE, MATCH_ANY):
            if seen_any:
                raise MatchError(f"path template {value!r}: {{**}} must be the last operator")
            seen_any = segment == MATCH_ANY
            parts.append(_SEGMENT + "+" if segment == MATCH_ONE else r"(?:" + _SEGMENT + r"|/)*")
        elif "{" in segment or "}" in segment:
            raise MatchError(f"path template {value!r}: {{*}} and {{**}} must be a whole path segment")
        elif segment and not _LITERAL.fullmatch(segment):
            raise MatchError(f"path template {value!r}: segment {segment!r} has characters other than"
                             " RFC 3986 pchars (a '*' is only allowed as {*} or {**})")
        else:
            parts.append(regex_escape(segment))
    return compile_regex("/" + "/".join(parts))


_LITERAL = compile_regex(_SEGMENT + "+")


@dataclass(frozen=True, slots=True)
class PathSet:
    """Compiled path patterns: Istio string forms plus URI templates."""

    strings: StringSet
    templates: tuple[Regex, ...] = ()

    def __call__(self, value: str | None) -> bool:
        if self.strings(value):
            return True
        if value is None or not self.templates:
            return False
        return any(t.fullmatch(value) for t in self.templates)

    @property
    def only_exact(self) -> bool:
        """True when every path is exact."""
        return self.strings.only_exact and not self.templates


def path_set(values: Iterable[str]) -> PathSet:
    """Compile path patterns (templates are recognised by ``{*}`` / ``{**}``)."""
    plain = []
    templates = []
    for value in values:
        if is_path_template(value):
            templates.append(path_template(value))
        else:
            plain.append(value)
    return PathSet(string_set(plain), tuple(templates))


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def ip_network(value: str) -> Network:
    """Parse ``1.2.3.4`` (a single address) or ``1.2.3.0/24``; raise MatchError naming the value."""
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise MatchError(f"{value!r} is not an IP address or CIDR block") from None


@dataclass(frozen=True, slots=True)
class IPSet:
    """Compiled IP addresses and CIDR blocks."""

    networks: tuple[Network, ...]

    def __call__(self, value: Any) -> bool:
        if value is None:
            return False
        for network in self.networks:
            if value.version == network.version and value in network:
                return True
        return False


def ip_set(values: Iterable[str]) -> IPSet:
    """Compile IP blocks."""
    return IPSet(tuple(ip_network(v) for v in values))


def port_number(value: Any) -> int:
    """Parse a port (0-65535) given as a string or a number; raise MatchError when it is none."""
    try:
        port = int(str(value).strip())
    except ValueError:
        raise MatchError(f"{value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise MatchError(f"port {port} is out of range 0-65535")
    return port


def port_set(values: Iterable[Any]) -> Callable[[int | None], bool]:
    """Compile a list of ports into a membership test."""
    ports = frozenset(port_number(v) for v in values)
    return ports.__contains__


def bracket_names(text: str, key: str) -> list[str]:
    """``[a][b]`` → ``["a", "b"]``; raise MatchError (naming ``key``) when malformed."""
    names = []
    rest = text
    while rest:
        if not rest.startswith("["):
            raise MatchError(f"{key!r}: expected '[name]' after the attribute name")
        end = rest.find("]")
        if end <= 1:
            raise MatchError(f"{key!r}: empty or unclosed '[...]'")
        names.append(rest[1:end])
        rest = rest[end + 1:]
    if not names:
        raise MatchError(f"{key!r}: the name must be given in brackets, e.g. {key}[name]")
    return names


__all__ = [
    "HeaderSet", "IPSet", "MatchError", "PathSet", "StringSet", "bracket_names", "header_set",
    "ip_network", "ip_set", "is_path_template", "path_set", "path_template", "port_number",
    "port_set", "string_set",
]
