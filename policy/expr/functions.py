"""Run-time behaviour of the expression functions, following Mixer's externs.

Each conversion raises :class:`FunctionError` with Mixer's wording on bad input;
the compiled expression turns that into an :class:`~policy.expr.EvaluationError`
naming the expression (or, for constant input, into a compile-time error).
Mixer's sources: ``mixer/pkg/lang/externs.go`` (istio 1.7).
"""

from __future__ import annotations

import datetime as _dt
import functools
import ipaddress
import re
import types
import unicodedata
from collections.abc import Mapping

from policy.expr._uri import parse_uri
from policy.expr.regex import Regex, RegexError, compile_regex as _compile_re2


class FunctionError(Exception):
    """A function rejected its input; the message is the reason, without the expression."""


EMPTY_STRING_MAP: Mapping[str, str] = types.MappingProxyType({})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- ip -------------------------------------------------------------------------------------

def ip(text: str) -> IPAddress:
    """Convert an IPv4 or IPv6 address text, as Go's ``net.ParseIP`` (no zones, no prefixes)."""
    if "%" not in text and "/" not in text:
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            pass
    raise FunctionError(f"could not convert {text} to IP_ADDRESS")


def ip_canonical(value: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as its IPv4 form (Go's ``net.IP.Equal`` treats them alike)."""
    if value.version == 6 and value.ipv4_mapped is not None:
        return value.ipv4_mapped
    return value


def ip_equal(a: IPAddress, b: IPAddress) -> bool:
    """IP equality where ``1.2.3.4`` equals ``::ffff:1.2.3.4``, as in Mixer's ``ip_equal``."""
    return a == b or ip_canonical(a) == ip_canonical(b)


# --- timestamp ------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:(Z)|([+-])(\d{2}):(\d{2}))\Z"
)


def timestamp(text: str) -> _dt.datetime:
    """Parse RFC 3339 as Go's ``time.Parse(time.RFC3339, ..)``; the result is in UTC."""
    m = _RFC3339.match(text)
    if m is not None:
        year, month, day, hour, minute, second, frac, zulu, sign, oh, om = m.groups()
        try:
            offset = _dt.timedelta(hours=int(oh), minutes=int(om)) if not zulu else _dt.timedelta(0)
            tz = _dt.timezone(-offset if sign == "-" else offset)
            micros = int((frac or "0")[:6].ljust(6, "0"))
            value = _dt.datetime(int(year), int(month), int(day), int(hour), int(minute),
                                 int(second), micros, tzinfo=tz)
            return value.astimezone(_dt.timezone.utc)
        except (ValueError, OverflowError):
            pass
    raise FunctionError(
        f"could not convert '{text}' to TIMESTAMP. expected format: '2006-01-02T15:04:05Z07:00'"
    )


# --- dnsName --------------------------------------------------------------------------------

_LDH = re.compile(r"[A-Za-z0-9-]+\Z")


def _dns_labels(text: str) -> list[str]:
    """Validate a DNS name the way Mixer's IDNA profile does; return its labels in Unicode.

    Empty names and empty labels are invalid (a single trailing dot is allowed);
    ASCII labels hold letters, digits and hyphens only, never start or end with
    a hyphen, and have no ``--`` in positions 3-4 unless they are ``xn--``
    Punycode, which must decode.
    """
    if not text:
        raise FunctionError("empty name")
    labels = text.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    out = []
    for label in labels:
        if label == "":
            raise FunctionError("empty label")
        if label[:4].lower() == "xn--":
            try:
                label = label[4:].encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                raise FunctionError(f"invalid punycode label '{label}'") from None
            if not label or label.isascii():
                raise FunctionError("invalid punycode label")
        elif len(label) > 4 and label[2:4] == "--":
            raise FunctionError(f"label '{label}' has '--' in positions 3 and 4")
        if label[0] == "-" or label[-1] == "-":
            raise FunctionError(f"label '{label}' starts or ends with '-'")
        if label.isascii():
            if not _LDH.match(label):
                raise FunctionError(f"label '{label}' has a character outside [A-Za-z0-9-]")
        else:
            if unicodedata.category(label[0]).startswith("M"):
                raise FunctionError(f"label '{label}' starts with a combining mark")
            for ch in label:
                if ch.isascii() and not (ch.isalnum() or ch == "-"):
                    raise FunctionError(f"label '{label}' has the character {ch!r}")
        out.append(label)
    return out


def dns_name(text: str) -> str:
    """Validate a DNS name (Mixer's ``dnsName``); return it with Punycode labels decoded."""
    try:
        labels = _dns_labels(text)
    except FunctionError as e:
        raise FunctionError(f"error converting '{text}' to dns name: '{e}'") from None
    return ".".join(labels) + ("." if text.endswith(".") and len(text) > 1 else "")


@functools.lru_cache(maxsize=1024)
def _dns_key(name: str) -> str:
    folded = unicodedata.normalize("NFKC", name).casefold()
    return ".".join(_dns_labels(folded))


def dns_name_equal(a: str, b: str) -> bool:
    """DNS names equal ignoring case and a trailing dot (Mixer's ``dnsName_equal``)."""
    if a == b:
        return True
    try:
        return _dns_key(a) == _dns_key(b)
    except FunctionError as e:
        raise FunctionError(f"error comparing dns names '{a}' and '{b}': '{e}'") from None


# --- email ----------------------------------------------------------------------------------

_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]+\Z")


def _addr_spec(text: str) -> tuple[str, str]:
    """Split an address like Go's ``net/mail.ParseAddress``; return (local part, domain)."""
    s = text.strip()
    if "<" in s:
        name, _, rest = s.partition("<")
        if name.strip():
            raise FunctionError("display names are not allowed")
        if not rest.endswith(">"):
            raise FunctionError("unclosed angle-addr")
        s = rest[:-1]
    if s.startswith('"'):
        m = re.match(r'"((?:[^"\\]|\\.)*)"', s)
        if m is None:
            raise FunctionError("unclosed quoted-string")
        local = re.sub(r"\\(.)", r"\1", m.group(1))
        rest = s[m.end():]
    else:
        local, at, domain = s.partition("@")
        _dot_atom(local, "local-part")
        rest = at + domain
    if not rest.startswith("@"):
        raise FunctionError("missing @ in addr-spec")
    domain = rest[1:]
    if domain.startswith("[") and domain.endswith("]"):
        return local, domain
    _dot_atom(domain, "domain")
    return local, domain


def _dot_atom(text: str, what: str) -> None:
    if not text:
        raise FunctionError(f"no {what}")
    for atom in text.split("."):
        if not atom or not _ATEXT.match(atom):
            raise FunctionError(f"invalid {what} '{text}'")


def email(text: str) -> str:
    """Validate an e-mail address without display name (Mixer's ``email``); return it unchanged."""
    try:
        _local, domain = _addr_spec(text)
        dns_name(domain)
    except FunctionError as e:
        raise FunctionError(f"error converting '{text}' to e-mail: '{e}'") from None
    return text


def email_equal(a: str, b: str) -> bool:
    """E-mail equality: local parts exactly, domains as DNS names (Mixer's ``email_equal``)."""
    try:
        local_a, domain_a = _addr_spec(a)
        local_b, domain_b = _addr_spec(b)
        return local_a == local_b and dns_name_equal(domain_a, domain_b)
    except FunctionError as e:
        raise FunctionError(f"error comparing e-mails '{a}' and '{b}': {e}") from None


# --- uri ------------------------------------------------------------------------------------

def uri(text: str) -> str:
    """Validate a URI as Go's ``url.Parse`` would (Mixer's ``uri``); return it unchanged."""
    if text == "":
        raise FunctionError("error converting string to uri: empty string")
    try:
        parse_uri(text)
    except ValueError as e:
        raise FunctionError(f"error converting string to uri '{text}': '{e}'") from None
    return text


def uri_equal(a: str, b: str) -> bool:
    """URIs equal, schemes ignoring case, http(s) hosts as DNS names (Mixer's ``uri_equal``)."""
    try:
        ua, ub = parse_uri(a), parse_uri(b)
    except ValueError as e:
        raise FunctionError(f"error comparing uris '{a}' and '{b}': {e}") from None
    if ua.scheme.lower() != ub.scheme.lower():
        return False
    if ua.scheme.lower() in ("http", "https"):
        if not dns_name_equal(ua.hostname, ub.hostname):
            return False
        if ua.port != ub.port:
            return False
        return ua.without_host() == ub.without_host()
    return ua.without_scheme() == ub.without_scheme()


# --- strings --------------------------------------------------------------------------------

def match(text: str, pattern: str) -> bool:
    """Mixer's glob: ``"abc*"`` is a prefix match, ``"*abc"`` a suffix match, else equality."""
    if pattern.endswith("*"):
        return text.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return text.endswith(pattern[1:])
    return text == pattern


def compile_regex(pattern: str) -> Regex:
    """Compile a ``matches`` pattern with RE2, as Go's ``regexp`` (see :mod:`policy.expr.regex`)."""
    try:
        return _compile_re2(pattern)
    except RegexError as e:
        raise FunctionError(str(e)) from None


def matches(pattern: str, text: str) -> bool:
    """Unanchored regular-expression search, as Go's ``regexp.MatchString``."""
    return compile_regex(pattern).search(text) is not None


def size(text: str) -> int:
    """Length of a string in bytes of UTF-8, as Go's ``len`` (Mixer's ``size``)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
