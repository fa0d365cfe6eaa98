"""List entry types, parsing of provider content, and the compiled matchers.

Each matcher is built once per list version and answers ``in`` without scanning
the entries: a set for strings, a case-folded set for case-insensitive strings, a
table of (mask, set of network numbers) per address family for IPs (one probe per
distinct prefix length), and one joined regular expression for regexes.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, Union

import yaml

from policy import RegexError, compile_regex

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


class EntryType(enum.Enum):
    """How list entries (and the checked value) are interpreted (Mixer's ``ListEntryType``)."""

    STRINGS = "STRINGS"
    CASE_INSENSITIVE_STRINGS = "CASE_INSENSITIVE_STRINGS"
    IP_ADDRESSES = "IP_ADDRESSES"
    REGEX = "REGEX"


class ListFormatError(ValueError):
    """Provider content or an entry could not be parsed; the message names the entry."""


# --- one entry ---------------------------------------------------------------


def parse_network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse an address (``10.0.0.1``, ``::1``) or a CIDR (``10.0.0.0/8``, ``2001:db8::/32``).

    A bare address is a single-host network of its own family. Host bits set in a
    CIDR are masked off, as Go's ``net.ParseCIDR`` (used by Mixer) does.
    """
    text = entry.strip()
    if not text:
        raise ListFormatError("empty entry")
    try:
        if "/" in text:
            return ipaddress.ip_network(text, strict=False)
        return ipaddress.ip_network(ipaddress.ip_address(text))
    except ValueError as exc:
        raise ListFormatError(f"{entry!r} is not an IP address or CIDR: {exc}") from None


def entry_error(entry_type: EntryType, entry: str) -> str | None:
    """Tell what is wrong with one configured entry of ``entry_type``, or None when it is fine."""
    if entry_type in (EntryType.STRINGS, EntryType.CASE_INSENSITIVE_STRINGS):
        return None  # as Mixer: "" is skipped, any other text is an entry as written
    if not entry.strip():
        return "empty entry (an empty regex would match everything)" if entry_type is EntryType.REGEX \
            else "empty entry"
    if entry_type is EntryType.IP_ADDRESSES:
        try:
            parse_network(entry)
        except ListFormatError as exc:
            return str(exc)
    elif entry_type is EntryType.REGEX:
        try:
            compile_regex(entry)
        except RegexError as exc:
            return f"{entry!r} is not a valid regular expression (RE2 syntax, as Mixer's): {exc}"
    return None


# --- provider content --------------------------------------------------------

_YAML_WHITELIST = re.compile(r"^\s*whitelist\s*:", re.MULTILINE)


def parse_content(entry_type: EntryType, data: bytes) -> list[str]:
    """Split a provider's content into entries: one per line, blank lines skipped.

    Lines are stripped of surrounding whitespace (so CRLF files work). For
    IP_ADDRESSES, Mixer's YAML form ``whitelist: [entries...]`` is accepted too.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ListFormatError(f"content is not UTF-8: {exc}") from None
    if entry_type is EntryType.IP_ADDRESSES and _YAML_WHITELIST.search(text):
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ListFormatError(f"content is not valid YAML: {exc}") from None
        entries = doc.get("whitelist") if isinstance(doc, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ListFormatError("YAML content must be a mapping with a 'whitelist' list of strings")
        return [e.strip() for e in entries if e.strip()]
    return [line for line in (raw.strip() for raw in text.splitlines()) if line]


# --- matchers ----------------------------------------------------------------


class StringMatcher:
    """Exact string membership."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._entries = frozenset(entries)

    def __contains__(self, value: str) -> bool:
        return value in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class CaseInsensitiveMatcher(StringMatcher):
    """String membership ignoring case (Unicode case folding)."""

    def __init__(self, entries: Iterable[str]) -> None:
        super().__init__(e.casefold() for e in entries)

    def __contains__(self, value: str) -> bool:
        return value.casefold() in self._entries


class IPMatcher:
    """Addresses and CIDRs of both families; an address matches when any network contains it.

    Per family, networks are grouped by prefix length into sets of network numbers,
    so a lookup costs one mask-and-probe per distinct prefix length (at most 33 for
    IPv4, 129 for IPv6), however long the list.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        groups: dict[int, dict[int, set[int]]] = {4: {}, 6: {}}
        count = 0
        for entry in entries:
            net = parse_network(entry)
            groups[net.version].setdefault(net.prefixlen, set()).add(int(net.network_address))
            count += 1
        self._count = count
        self._tables: dict[int, tuple[tuple[int, frozenset[int]], ...]] = {}
        for version, by_prefix in groups.items():
            bits = 32 if version == 4 else 128
            full = (1 << bits) - 1
            self._tables[version] = tuple(
                (full ^ ((1 << (bits - prefix)) - 1), frozenset(numbers))
                for prefix, numbers in sorted(by_prefix.items(), reverse=True)
            )

    def __contains__(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        number = int(address)
        for mask, numbers in self._tables[address.version]:
            if number & mask in numbers:
                return True
        return False

    def __len__(self) -> int:
        return self._count


# Joining patterns into one alternation renumbers their groups; that is harmless
# unless a pattern refers to a group by number or name.
_GROUP_REFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")


class RegexMatcher:
    """Matches when any pattern matches somewhere in the value (Go's ``MatchString``)."""

    def __init__(self, entries: Sequence[str]) -> None:
        compiled = []
        for entry in entries:
            try:
                compiled.append(compile_regex(entry))
            except RegexError as exc:
                raise ListFormatError(f"{entry!r} is not a valid regular expression (RE2 syntax, as Mixer's): "
                                      f"{exc}") from None
        self._count = len(compiled)
        self._searches = [p.search for p in compiled]
        if compiled and not any(_GROUP_REFERENCE.search(p.pattern) for p in compiled):
            try:
                joined = compile_regex("|".join(f"(?:{p.pattern})" for p in compiled))
                self._searches = [joined.search]
            except RegexError:
                pass  # e.g. inline global flags or a repeated group name: keep one search per pattern

    def __contains__(self, value: str) -> bool:
        return any(search(value) is not None for search in self._searches)

    def __len__(self) -> int:
        return self._count


class Matcher(Protocol):
    """What a handler needs of a built list: membership (a string or an IP address) and its size."""

    def __contains__(self, value: Any, /) -> bool: ...

    def __len__(self) -> int: ...


def build_matcher(entry_type: EntryType, entries: Sequence[str]) -> Matcher:
    """Compile ``entries`` into the matcher for ``entry_type``; ListFormatError names a bad entry."""
    if entry_type is EntryType.STRINGS:
        return StringMatcher(e for e in entries if e)  # Mixer never lists ""
    if entry_type is EntryType.CASE_INSENSITIVE_STRINGS:
        return CaseInsensitiveMatcher(e for e in entries if e)
    if entry_type is EntryType.IP_ADDRESSES:
        return IPMatcher(entries)
    return RegexMatcher(entries)
