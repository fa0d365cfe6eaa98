"""envoyproxy/ratelimit's configuration format, read into descriptor trees per domain.

::

    domain: shop
    descriptors:
      - key: remote_address
        rate_limit: {unit: second, requests_per_unit: 10}
      - key: path
        value: /api/*/books*             # '*' anywhere matches any run of characters
        share_threshold: true            # every matching value shares one counter
        rate_limit: {unit: minute, requests_per_unit: 100, name: api}
        descriptors:
          - key: user
            rate_limit: {unlimited: true}
      - key: generic_key
        value: bulk
        shadow_mode: true                # answer OK, but count what would be limited
        quota_mode: true                 # over limit only when every quota descriptor is
        metadata: {team: batch}          # into the response's dynamic metadata
        rate_limit: {unit: hour, requests_per_unit: 5, replaces: [{name: api}]}

Every error names file, document and field (unknown keys are rejected, as the
reference's config check does). Lookup follows the reference's ``GetLimit``: at
each level the entry ``key_value`` is tried, then wildcard values (first
configured first), then ``key`` alone; a limit applies only when the request's
descriptor ends at the level holding it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policy.config.ratelimit.stats import RateLimitStats
from policy.sdk import param

#: Seconds per unit (the reference's divider: a month is 30 days, a year 365).
UNIT_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400, "WEEK": 604800,
                "MONTH": 2592000, "YEAR": 31536000}
ROOT_KEYS = ("domain", "descriptors")
DESCRIPTOR_KEYS = ("key", "value", "rate_limit", "descriptors", "shadow_mode", "quota_mode", "detailed_metric",
                   "value_to_metric", "share_threshold", "metadata")
LIMIT_KEYS = ("unit", "requests_per_unit", "unlimited", "name", "replaces")
#: Top-level keys of the compact Mixer form: a document with one of them is no rate-limit file.
COMPACT_KEYS = ("settings", "handlers", "instances", "rules", "attributes", "templates", "adapters")
FLAGS = ("shadow_mode", "quota_mode", "detailed_metric", "value_to_metric", "share_threshold")
MAX_UINT32 = 2 ** 32 - 1

#: Reports one error: (document label, field path, message).
ErrorSink = Callable[[str, str, str], None]


@dataclass(frozen=True)
class RateLimitSettings:
    """The ``settings.rateLimit`` section: which handler counts, and the service's options."""

    handler: str = param(doc="The memquota or redisquota handler that counts the rate limits.")
    response_headers: bool = param(False, doc="Add the RateLimit-Limit, -Remaining and -Reset headers of the "
                                              "descriptor closest to its limit (LIMIT_RESPONSE_HEADERS_ENABLED).")
    limit_header: str = param("RateLimit-Limit", doc="Name of the limit header (LIMIT_LIMIT_HEADER).")
    remaining_header: str = param("RateLimit-Remaining", doc="Name of the remaining header (LIMIT_REMAINING_HEADER).")
    reset_header: str = param("RateLimit-Reset", doc="Name of the reset header (LIMIT_RESET_HEADER).")
    shadow_mode: bool = param(False, doc="Global shadow mode: always answer OK, count what would be limited "
                                         "(SHADOW_MODE).")
    quota_mode: bool = param(False, doc="Global quota mode: every limit is a quota limit (QUOTA_MODE).")
    stop_increment_when_over_limit: bool = param(
        False, doc="Stop charging counters when a request goes over a limit: then only the counters that go "
                   "over are charged (STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT). Default: every matched counter "
                   "is charged on every request, also when over its limit.")
    merge_domain_configs: bool = param(False, doc="Merge files that configure the same domain instead of "
                                                  "rejecting them (MERGE_DOMAIN_CONFIG).")
    response_dynamic_metadata: bool = param(False, doc="Answer with dynamic metadata: domain, descriptors, "
                                                       "hitsAddend, and the metadata of the descriptors within "
                                                       "their limit (RESPONSE_DYNAMIC_METADATA).")
    near_limit_ratio: float = param(0.8, doc="Share of a limit from which hits count as near_limit "
                                             "(NEAR_LIMIT_RATIO).")


@dataclass(frozen=True)
class RateLimit:
    """One configured limit (or a request's own ``limit``), as one request sees it."""

    requests_per_unit: int
    unit: str
    full_key: str
    unlimited: bool = False
    shadow_mode: bool = False
    quota_mode: bool = False
    name: str = ""
    replaces: tuple[str, ...] = ()
    detailed_metric: bool = False
    metadata: Mapping[str, Any] | None = None
    #: Per request entry, the wildcard value counted in place of the request's (share_threshold), else "".
    share_patterns: tuple[str, ...] = ()
    #: The statistics key (full_key, or the detailed_metric / value_to_metric key of this request).
    stats_key: str = ""

    @property
    def window(self) -> int:
        """The window in seconds."""
        return UNIT_SECONDS.get(self.unit, 1)


@dataclass
class Node:
    """One level of a descriptor tree: children by ``key`` or ``key_value``, and an optional limit."""

    children: dict[str, "Node"] = field(default_factory=dict)
    #: (configured key_value, its parts split on '*') for values holding a '*', in config order.
    wildcards: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    limit: RateLimit | None = None
    value_to_metric: bool = False
    share_threshold: bool = False
    metadata: Mapping[str, Any] | None = None


def wildcard_match(parts: Sequence[str], value: str) -> bool:
    """True when ``value`` matches a pattern split on ``*`` (each ``*`` any run of characters).

    Linear: prefix and suffix checked, then each middle part found left to right
    (leftmost is always safe for ``*`` patterns, so there is no backtracking).
    """
    if len(parts) == 1:
        return parts[0] == value
    first, last = parts[0], parts[-1]
    if not value.startswith(first) or not value.endswith(last) or len(value) < sum(map(len, parts)):
        return False
    position, end = len(first), len(value) - len(last)
    for part in parts[1:-1]:
        found = value.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


@dataclass
class RateLimitConfig:
    """Domains with their descriptor trees, the settings, and the service's statistics (per snapshot)."""

    settings: RateLimitSettings
    domains: dict[str, Node] = field(default_factory=dict)
    handler_spec: Any = None
    configured_keys: set[str] = field(default_factory=set)
    statistics: RateLimitStats | None = None

    def __post_init__(self) -> None:
        if self.statistics is None:
            self.statistics = RateLimitStats(self.configured_keys)

    @property
    def stats(self) -> dict[str, int]:
        """Every counter by name (``total_hits``, ``shop.path.over_limit`` ...): see :mod:`policy.config.ratelimit.stats`."""
        assert self.statistics is not None
        return self.statistics.flat()

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a service-wide counter (``invalid_requests``, ``backend_errors`` ...)."""
        assert self.statistics is not None
        self.statistics.service(name, amount)

    def lookup(self, domain: str, entries: Sequence[tuple[str, str]]) -> RateLimit | None:
        """The limit for a request descriptor's entries, or None (the reference's ``GetLimit``)."""
        node = self.domains.get(domain)
        if node is None:
            return None
        level = node
        found: Node | None = None
        detailed = [domain]
        by_value = [domain]
        share: dict[int, str] = {}
        last = len(entries) - 1
        for i, (key, value) in enumerate(entries):
            final = f"{key}_{value}"
            detailed.append(final)
            nxt = level.children.get(final)
            wildcard = ""
            if nxt is None:
                for pattern, parts in level.wildcards:
                    if wildcard_match(parts, final):
                        nxt, wildcard = level.children[pattern], pattern
                        break
            matched_value = nxt is not None
            if nxt is None:
                nxt = level.children.get(key)
            if nxt is None:
                by_value.append(key)
                break
            if wildcard and nxt.share_threshold:
                share[i] = wildcard[len(key) + 1:]
            shown = ""
            if wildcard:
                shown = share.get(i) or (value if nxt.value_to_metric else wildcard[len(key) + 1:])
            elif matched_value or nxt.value_to_metric:
                shown = value
            by_value.append(f"{key}_{shown}" if shown else key)
            if nxt.limit is not None and i == last:
                found = nxt
            if not nxt.children:
                break
            level = nxt
        if found is None:
            return None
        limit = found.limit
        assert limit is not None
        patterns = tuple(share.get(i, "") for i in range(len(entries))) if share else ()
        if limit.detailed_metric:
            if patterns:
                key = ".".join([domain] + [f"{k}_{patterns[i]}" if patterns[i] else (f"{k}_{v}" if v else k)
                                           for i, (k, v) in enumerate(entries)])
            else:
                key = ".".join(detailed)
        else:
            key = ".".join(by_value)
        if not patterns and key == limit.stats_key and found.metadata is limit.metadata:
            return limit
        return RateLimit(limit.requests_per_unit, limit.unit, limit.full_key, limit.unlimited, limit.shadow_mode,
                         limit.quota_mode, limit.name, limit.replaces, limit.detailed_metric, found.metadata,
                         patterns, key)


def is_ratelimit_document(data: Any) -> bool:
    """True for an envoyproxy/ratelimit config document.

    A mapping without ``kind``/``apiVersion`` that has ``domain``, or has
    ``descriptors`` and nothing of a compact config (so a file meant as a
    rate-limit file without its ``domain`` gets the reference's error).
    """
    if not isinstance(data, Mapping) or "kind" in data or "apiVersion" in data:
        return False
    return "domain" in data or ("descriptors" in data and not any(k in COMPACT_KEYS for k in data))


def _unknown(data: Mapping[str, Any], allowed: Sequence[str], label: str, at: str, error: ErrorSink) -> None:
    for key in data:
        if not isinstance(key, str):
            error(label, at, f"config error, key is not of type string: {key!r}")
        elif key not in allowed:
            error(label, f"{at}.{key}" if at else str(key),
                  f"config error, unknown key {key!r} (allowed: {', '.join(allowed)})")


def _limit(raw: Any, full_key: str, flags: dict[str, bool], label: str, at: str,
           error: ErrorSink) -> RateLimit | None:
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
            error(label, f"{at}.replaces[{j}].name", "replaces should not contain name of same descriptor")
        else:
            replaces.append(target)
    return RateLimit(rpu, unit_name or "", full_key, unlimited, flags["shadow_mode"], flags["quota_mode"], name,
                     tuple(replaces), flags["detailed_metric"], stats_key=full_key)


def _struct_problem(value: Any, at: str) -> str | None:
    """Where a value cannot become a protobuf Struct value (as the reference's structpb.NewStruct), else None."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            problem = _struct_problem(item, f"{at}.{key}")
            if problem is not None:
                return problem
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = _struct_problem(item, f"{at}[{i}]")
            if problem is not None:
                return problem
        return None
    return f"{at}: {type(value).__name__} is not a JSON value"


def _metadata(raw: Any, label: str, at: str, error: ErrorSink) -> Mapping[str, Any] | None:
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, Mapping):
        error(label, at, "error parsing metadata: expected a mapping")
        return None
    problem = _struct_problem({str(k): v for k, v in raw.items()}, "metadata")
    if problem is not None:
        error(label, at, f"error parsing metadata: {problem}")
        return None
    return {str(k): v for k, v in raw.items()}


def _descriptors(node: Node, raw: Any, parent: str, label: str, at: str, error: ErrorSink,
                 configured: set[str]) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        error(label, at, "expected a list of descriptors")
        return
    for i, item in enumerate(raw):
        here = f"{at}[{i}]"
        if not isinstance(item, Mapping):
            error(label, here, f"config error, yaml file contains list of type other than map: {item!r}")
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
            error(label, here, f"duplicate descriptor composite key {full_key!r}")
            continue
        flags = {}
        for flag in FLAGS:
            flags[flag] = item.get(flag, False)
            if not isinstance(flags[flag], bool):
                error(label, f"{here}.{flag}", f"expected true or false, got {flags[flag]!r}")
                flags[flag] = False
        if flags["share_threshold"] and "*" not in final:
            error(label, f"{here}.share_threshold", "share_threshold can only be used with wildcard values "
                                                    f"(containing '*'), but found key {final!r}")
        child = Node(value_to_metric=flags["value_to_metric"], share_threshold=flags["share_threshold"],
                     metadata=_metadata(item.get("metadata"), label, f"{here}.metadata", error))
        if "rate_limit" in item:
            child.limit = _limit(item["rate_limit"], full_key, flags, label, f"{here}.rate_limit", error)
            if child.limit is not None and child.metadata is not None:
                child.limit = RateLimit(**{**child.limit.__dict__, "metadata": child.metadata})
            configured.add(full_key)
        _descriptors(child, item.get("descriptors"), full_key, label, f"{here}.descriptors", error, configured)
        node.children[final] = child
        if "*" in final:
            node.wildcards.append((final, tuple(final.split("*"))))


def compile_rate_limit(documents: Sequence[tuple[str, Any]], settings: RateLimitSettings,
                       error: ErrorSink) -> RateLimitConfig:
    """Read RLS documents, given as (label, data) pairs, into a :class:`RateLimitConfig`; errors go to ``error``.

    A domain given twice is an error naming both documents, unless
    ``merge_domain_configs`` (then the later document's descriptors join the domain).
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
            if not settings.merge_domain_configs:
                error(label, "domain", f"duplicate domain {domain!r} in config file (also in {first[domain]}; "
                                       "settings.rateLimit.mergeDomainConfigs merges them)")
                continue
            root = config.domains[domain]
        else:
            root = config.domains[domain] = Node()
            first[domain] = label
        _descriptors(root, data.get("descriptors"), domain, label, "descriptors", error, config.configured_keys)
    return config
