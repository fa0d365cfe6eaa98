"""Envoy's request path normalization, for the APIs whose paths no Envoy has normalized.

What ext_authz receives from Envoy
    Envoy's HTTP connection manager normalizes ``:path`` before any HTTP filter runs,
    ext_authz included, when its ``normalize_path`` option is on (Istio turns it on:
    ``meshConfig.pathNormalization`` ``BASE``, the default) and merges repeated slashes
    when ``merge_slashes`` is on (Istio's ``MERGE_SLASHES`` and
    ``DECODE_AND_MERGE_SLASHES``). So ``request.http.path`` in an ext_authz
    ``CheckRequest`` is already normalized, and the ext_authz server passes it on as sent.

What the native API and ``policy check`` receive
    Whatever the client sends: ``/admin/../public`` or ``//admin`` would reach policies
    un-normalized, and a rule on ``/admin*`` would not see ``/public/../admin``. So these
    two normalize ``request.path`` and ``request.url_path`` as Envoy would, by default
    with both options (mode ``merge-slashes``); ``base`` is ``normalize_path`` alone,
    ``none`` turns it off.

Normalization (Envoy's ``PathUtil::canonicalPath``, after Chromium's URL canonicalizer,
RFC 3986 section 6): the query is kept as is; in the path ``\\`` becomes ``/``,
percent-encoded unreserved characters are decoded and other escapes upper-cased,
characters not allowed in a path are percent-encoded (UTF-8), and ``.`` / ``..``
segments (``%2e`` too) are removed, never above the root.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MODES = ("none", "base", "merge-slashes")
DEFAULT_MODE = "merge-slashes"
PATH_ATTRIBUTES = ("request.path", "request.url_path")

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Characters kept literally in a canonical path (RFC 3986 pchar and "/"), besides unreserved ones.
_KEPT = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_HEX = frozenset("0123456789abcdefABCDEF")


def _escape_and_decode(path: str) -> str:
    out: list[str] = []
    i, n = 0, len(path)
    while i < n:
        c = path[i]
        if c == "%" and i + 2 < n and path[i + 1] in _HEX and path[i + 2] in _HEX:
            decoded = chr(int(path[i + 1:i + 3], 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + path[i + 1:i + 3].upper())
            i += 3
            continue
        if c == "\\":
            out.append("/")
        elif c in _KEPT:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8"))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    segments = path.split("/")[1:]
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
            continue
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(segment)
    return "/" + "/".join(out)


def normalize_path(path: str, merge_slashes: bool = True) -> str:
    """``path`` (query included) as Envoy's ``normalize_path`` (and ``merge_slashes``) would make it."""
    head, sep, query = path.partition("?")
    if not head.startswith("/") and not head.startswith("\\"):
        return path  # not an origin-form path (e.g. "*" or an absolute URI): Envoy leaves it
    if _KEPT.issuperset(head) and "/." not in head and not (merge_slashes and "//" in head):
        # Already canonical (the common case): only kept characters, so nothing to escape or
        # decode (no "%", no "\\"), no dot segment, no slashes to merge; the steps below
        # would return it unchanged.
        return path
    head = _remove_dot_segments(_escape_and_decode(head))
    if merge_slashes:
        while "//" in head:
            head = head.replace("//", "/")
    return head + sep + query


def normalize_attributes(values: Mapping[str, Any], mode: str) -> Mapping[str, Any]:
    """``values`` with ``request.path`` / ``request.url_path`` normalized by ``mode`` (see :data:`MODES`)."""
    if mode == "none":
        return values
    out: dict[str, Any] | None = None
    for name in PATH_ATTRIBUTES:
        value = values.get(name)
        if isinstance(value, str):
            normalized = normalize_path(value, merge_slashes=mode == "merge-slashes")
            if normalized != value:  # copied only when a path changes
                if out is None:
                    out = dict(values)
                out[name] = normalized
    return values if out is None else out


__all__ = ["DEFAULT_MODE", "MODES", "PATH_ATTRIBUTES", "normalize_attributes", "normalize_path"]
