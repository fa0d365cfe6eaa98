"""Just enough of Go's ``net/url.Parse`` to accept and reject what Mixer's ``uri`` does."""

from __future__ import annotations

import re
from typing import NamedTuple

_HEX = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CTL = re.compile(r"[\x00-\x1f\x7f]")
_USERINFO = re.compile(r"[A-Za-z0-9\-._:~!$&'()*+,;=%@]*\Z")
_HOST_OK = re.compile(r"[A-Za-z0-9\-_.~!$&'()*+,;=:\[\]<>\"%\x80-\U0010ffff]*\Z")


class URI(NamedTuple):
    """The parts of a URI, raw (escapes kept), as ``url.URL`` holds them."""

    scheme: str
    opaque: str
    userinfo: str | None
    hostname: str
    port: str
    path: str
    query: str | None
    fragment: str | None

    def without_host(self) -> tuple:
        """Everything but scheme, host and port (what http(s) equality compares verbatim)."""
        return (self.opaque, self.userinfo, self.path, self.query, self.fragment)

    def without_scheme(self) -> tuple:
        """Everything but the scheme."""
        return (self.opaque, self.userinfo, self.hostname, self.port, self.path, self.query,
                self.fragment)


def parse_uri(raw: str) -> URI:
    """Split ``raw`` into parts; raise ValueError where Go's ``url.Parse`` returns an error."""
    if _CTL.search(raw):
        raise ValueError("net/url: invalid control character in URL")
    rest, hash_, fragment = raw.partition("#")
    _check_escapes(fragment)
    scheme, rest = _scheme(rest)
    if rest.endswith("?") and rest.count("?") == 1:
        rest, query = rest[:-1], ""
    else:
        rest, q, query = rest.partition("?")
        query = query if q else None
    fragment_or_none = fragment if hash_ else None
    if not rest.startswith("/"):
        if scheme:
            return URI(scheme, rest, None, "", "", "", query, fragment_or_none)
        if ":" in rest.partition("/")[0]:
            raise ValueError("first path segment in URL cannot contain colon")
    userinfo, hostname, port = None, "", ""
    if (scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        userinfo, hostname, port = _authority(authority)
    _check_escapes(rest)
    return URI(scheme, "", userinfo, hostname, port, rest, query, fragment_or_none)


def _scheme(raw: str) -> tuple[str, str]:
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise ValueError("missing protocol scheme")
            return raw[:i], raw[i + 1:]
        return "", raw
    return "", raw


def _authority(authority: str) -> tuple[str | None, str, str]:
    userinfo, at, host = authority.rpartition("@")
    if at and not _USERINFO.match(userinfo):
        raise ValueError("net/url: invalid userinfo")
    if host.startswith("["):
        close = host.rfind("]")
        if close < 0:
            raise ValueError("missing ']' in host")
        hostname, port = host[1:close], host[close + 1:]
    else:
        colon = host.rfind(":")
        hostname, port = (host[:colon], host[colon:]) if colon >= 0 else (host, "")
    if port and not re.fullmatch(r":[0-9]*", port):
        raise ValueError(f"invalid port {port!r} after host")
    if not _HOST_OK.match(host):
        raise ValueError(f"invalid character in host name {host!r}")
    _check_escapes(host)
    return (userinfo if at else None), hostname, port[1:]


def _check_escapes(text: str) -> None:
    m = _HEX.search(text)
    if m:
        raise ValueError(f"invalid URL escape {text[m.start():m.start() + 3]!r}")
