"""envoyproxy/ratelimit's configuration format, read into descriptor trees per domain.

::

    domain: shop
    descriptors:
      - key: remote_address
        rate_limit: {unit: second, requests_per_unit: 10}
      - key: path
        value: /api/*                  # a value ending in * matches by prefix
        rate_limit: {unit: minute, requests_per_unit: 100, name: api}
        descriptors:
          - key: user
            rate_limit: {unlimited: true}
      - key: generic_key
        value: bulk
        shadow_mode: true              # answer OK, but count what would be limited
        rate_limit: {unit: hour, requests_per_unit: 5, replaces: [{name: api}]}

Every error names file, document and field (unknown keys are rejected, as the
reference's config check does). Lookup follows the reference: at each level the
entry ``key_value`` is tried, then wildcard values by prefix, then ``key`` alone;
a limit applies only when the request's descriptor ends at the level holding it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policy.sdk import param

#: Seconds per unit (the reference's divider: a month is 30 days, a year 365).
UNIT_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400, "WEEK": 604800,
                "MONTH": 2592000, "YEAR": 31536000}
ROOT_KEYS = ("domain", "descriptors")
DESCRIPTOR_KEYS = ("key", "value", "rate_limit", "descriptors", "shadow_mode", "detailed_metric")
LIMIT_KEYS = ("unit", "requests_per_unit", "unlimited", "name", "replaces")
MAX_UINT32 = 2 ** 32 - 1

#: Reports one error: (document label, field path, message).
ErrorSink = Callable[[str, str, str], None]


@dataclass(frozen=True)
class RateLimitSettings:
    """The ``settings.rateLimit`` section: which handler counts, and the service's options."""

    handler: str = param(doc="The memquota or redisquota handler that counts the rate limits.")
    response_headers: bool = param(False, doc="Add RateLimit-Limit, -Remaining and -Reset headers "
                                              "(draft-ietf-httpapi-ratelimit-headers-03) to responses.")
    shadow_mode: bool = param(False, doc="Global shadow mode: always answer OK, count what would be limited.")


@dataclass(frozen=True)
class RateLimit:
    """One configured limit."""

    requests_per_unit: int
    unit: str
    full_key: str
    unlimited: bool = False
    shadow_mode: bool = False
    name: str = ""
    replaces: tuple[str, ...] = ()

    @property
    def window(self) -> int:
        """The window in seconds."""
        return UNIT_SECONDS.get(self.unit, 1)


@dataclass
class Node:
    """One level of a descriptor tree: children by ``key`` or ``key_value``, and an optional limit."""

    children: dict[str, "Node"] = field(default_factory=dict)
    wildcards: list[str] = field(default_factory=list)
    limit: RateLimit | None = None


@dataclass
class RateLimitConfig:
    """Domains with their descriptor trees, the settings, and the service's counters (per snapshot)."""

    settings: RateLimitSettings
    domains: dict[str, Node] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    handler_spec: Any = None

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a counter (``total_hits``, ``over_limit``, ``shadow_mode``, ``<full key>.over_limit`` ...)."""
        self.stats[name] = self.stats.get(name, 0) + amount

    def lookup(self, domain: str, entries: Sequence[tuple[str, str]]) -> RateLimit | None:
        """The limit for a request descriptor's entries, or None (see the module docstring)."""
        node = self.domains.get(domain)
        if node is None:
            return None
        level = node
        found = None
        for i, (key, value) in enumerate(entries):
            final = f"{key}_{value}"
            nxt = level.children.get(final)
            if nxt is None:
                for wildcard in level.wildcards:
                    if final.startswith(wildcard[:-1]):
                        nxt = level.children[wildcard]
                        break
            if nxt is None:
                nxt = level.children.get(key)
            if nxt is not None and nxt.limit is not None and i == len(entries) - 1:
                found = nxt.limit
            if nxt is None or not nxt.children:
                break
            level = nxt
        return found


def is_ratelimit_document(data: Any) -> bool:
    """True for an envoyproxy/ratelimit config document (a mapping with ``domain`` and no kind)."""
    return isinstance(data, Mapping) and "domain" in data and "kind" not in data and "apiVersion" not in data


def _unknown(data: Mapping[str, Any], allowed: Sequence[str], label: str, at: str, error: ErrorSink) -> None:
    for key in data:
        if key not in allowed:
            error(label, f"{at}.{key}" if at else str(key), f"unknown key (allowed: {', '.join(allowed)})")


def _limit(raw: Any, full_key: str, shadow: bool, label: str, at: str, error: ErrorSink) -> RateLimit | None:
    if not isinstance(raw, Mapping):
        error(label, at, "expected a mapping with unit and requests_per_unit")
        return None
    _unknown(raw, LIMIT_KEYS, label, at, error)
    unlimited = raw.get("unlimited", False)
    if not isinstance(unlimited, bool):
        error(label, f"{at}.unlimited", f"expected true or false, got {unlimited!r}")
        return None
    unit = raw.get("unit")
    unit_name = unit.upper() if isinstance(unit, str) else None
    if unlimited and unit_name in UNIT_SECONDS:
        error(label, f"{at}.unit", "should not specify rate limit unit when unlimited")
        return None
    if not unlimited and unit_name not in UNIT_SECONDS:
        error(label, f"{at}.unit", f"invalid rate limit unit {unit!r} (expected one of "
                                   f"{', '.join(u.lower() for u in UNIT_SECONDS)})")
        return None
    rpu = raw.get("requests_per_unit", 0)
    if isinstance(rpu, bool) or not isinstance(rpu, int) or not 0 <= rpu <= MAX_UINT32:
        error(label, f"{at}.requests_per_unit", f"expected an integer from 0 to {MAX_UINT32}, got {rpu!r}")
        return None
    name = raw.get("name", "") or ""
    if not isinstance(name, str):
        error(label, f"{at}.name", f"expected a string, got {name!r}")
        return None
    replaces = []
    for j, item in enumerate(raw.get("replaces") or []):
        target = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(target, str) or not target:
            error(label, f"{at}.replaces[{j}].name", "should not have an empty replaces entry")
        elif target == name:
            error(label, f"{at}.replaces[{j}].name", "replaces should not contain the name of the same descriptor")
        else:
            replaces.append(target)
    return RateLimit(rpu, unit_name or "", full_key, unlimited, shadow, name, tuple(replaces))


def _descriptors(node: Node, raw: Any, parent: str, label: str, at: str, error: ErrorSink) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        error(label, at, "expected a list of descriptors")
        return
    for i, item in enumerate(raw):
        here = f"{at}[{i}]"
        if not isinstance(item, Mapping):
            error(label, here, "expected a mapping with key (and value, rate_limit, descriptors)")
            continue
        _unknown(item, DESCRIPTOR_KEYS, label, here, error)
        key, value = item.get("key"), item.get("value", "")
        if not isinstance(key, str) or not key:
            error(label, f"{here}.key", "descriptor has empty key")
            continue
        if value is None:
            value = ""
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            error(label, f"{here}.value", f"expected a string, got {value!r}")
            continue
        final = f"{key}_{value}" if str(value) else key
        full_key = f"{parent}.{final}"
        if final in node.children:
            error(label, f"{here}", f"duplicate descriptor composite key {full_key!r}")
            continue
        shadow = item.get("shadow_mode", False)
        if not isinstance(shadow, bool):
            error(label, f"{here}.shadow_mode", f"expected true or false, got {shadow!r}")
            shadow = False
        child = Node()
        if "rate_limit" in item:
            child.limit = _limit(item["rate_limit"], full_key, shadow, label, f"{here}.rate_limit", error)
        _descriptors(child, item.get("descriptors"), full_key, label, f"{here}.descriptors", error)
        node.children[final] = child
        if final.endswith("*"):
            node.wildcards.append(final)


def compile_rate_limit(documents: Sequence[tuple[str, Any]], settings: RateLimitSettings,
                       error: ErrorSink) -> RateLimitConfig:
    """Read RLS documents, given as (label, data) pairs, into a :class:`RateLimitConfig`; errors go to ``error``.

    A domain given twice is an error (the reference's default, without merging).
    """
    config = RateLimitConfig(settings)
    first: dict[str, str] = {}
    for label, data in documents:
        _unknown(data, ROOT_KEYS, label, "", error)
        domain = data.get("domain")
        if not isinstance(domain, str) or not domain:
            error(label, "domain", "config file cannot have empty domain")
            continue
        if domain in config.domains:
            error(label, "domain", f"duplicate domain {domain!r} (first in {first[domain]})")
            continue
        root = Node()
        _descriptors(root, data.get("descriptors"), domain, label, "descriptors", error)
        config.domains[domain] = root
        first[domain] = label
    return config
