"""The ``input`` document a policy sees, built from the instance alone — the one implementation.

For ``requestcontext`` instances it is OPA-Envoy's shape (``opa-envoy-plugin``'s
``envoyauth/request.go`` for an ext_authz v3 ``CheckRequest``), so policies written
for OPA-Envoy run unchanged::

    {"attributes": {"source": {"address": {"socketAddress": {"address", "portValue"}}, "principal", "labels"},
                    "destination": {...same..., "labels"},
                    "request": {"http": {"method", "path", "host", "scheme", "headers", "body",
                                         "id", "size"}},
                    "contextExtensions": {...}, "tlsSession": {"sni"}},
     "parsed_path": ["people", "1"], "parsed_query": {"lang": ["en"]},
     "parsed_body": {...} | null, "truncated_body": false,
     "source_principal": "spiffe://...",
     "version": {"ext_authz": "v3", "encoding": "protojson"}}

As OPA-Envoy builds it:

* absent and empty values are left out, as protojson leaves out fields with their
  default value (the template gives ``""``, ``0``, ``{}`` or ``0.0.0.0`` for absent
  attributes); a TCP check (no HTTP request) has no ``request.http``;
* ``parsed_path`` / ``parsed_query`` come from the path as sent: cut at the first
  ``?``, the path percent-decoded (Go's ``url.PathUnescape``), leading ``/`` trimmed,
  split on ``/``; the query parsed as Go's ``url.ParseQuery`` (``+`` is a space, a bad
  escape or a ``;`` in a key is an error);
* ``parsed_body``: with ``x-envoy-auth-partial-body: true`` none, and
  ``truncated_body`` true; else by ``content-type``: JSON, form
  (``application/x-www-form-urlencoded``: lists of values), ``multipart/form-data``
  (lists of values per part name, JSON parts parsed); a body shorter than its
  ``content-length`` is truncated and not parsed; other types (gRPC included) give
  none. A body that does not parse is an :class:`InputError`, as OPA-Envoy errs;
* ``source_principal`` when the source has one;
* ``skip_body`` (OPA-Envoy's ``skip-request-body-parse``) leaves ``parsed_body`` and
  ``truncated_body`` out.

Over ext_authz the instance's ``envoy_input`` (``envoy.attributes_by_path``) holds the
request's ``AttributeContext`` by path, and :func:`input_from_paths` takes
``input.attributes`` from it for the paths the policy reaches (``reach``, from
:mod:`adapters.opa._reach`; None: all of it): exactly OPA-Envoy's values there,
``metadataContext``, ``request.time``, the protocol as sent and ``source.service``
included. Elsewhere (the native API) the template's fields are all there is, so
``request.http.protocol``, ``request.time``, ``metadataContext``, ``source.service`` and
``source.certificate`` are absent. An instance that sets ``envoy_attributes:
envoy.attributes`` hands over the whole ``AttributeContext`` verbatim (a cached
decision then needs the very same request).

For ``authorization`` instances it is Mixer's opa adapter shape:
``{"subject": {"user", "groups": [groups], "properties"}, "action": {"namespace",
"service", "method", "path", "properties"}}`` with empty members left out.

Everything comes from the instance, whose expressions' reads (and the paths looked up
in ``envoy_input``) key the decision cache, so cached decisions stay correct.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from adapters.opa._reach import minimal

VERSION = {"ext_authz": "v3", "encoding": "protojson"}

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class InputError(ValueError):
    """The request cannot be turned into an input document (a body or query that does not parse)."""


def _address(ip: Any, port: int | None) -> dict[str, Any]:
    socket: dict[str, Any] = {}
    if ip is not None and not ip.is_unspecified:
        socket["address"] = str(ip)
    if port:
        socket["portValue"] = port
    return {"address": {"socketAddress": socket}} if socket else {}


def _unescape(text: str, what: str, plus_is_space: bool) -> str:
    """Go's ``url.PathUnescape`` / ``url.QueryUnescape``: a ``%`` not followed by two hex digits errs."""
    if plus_is_space:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    if _BAD_ESCAPE.search(text):
        raise InputError(f"invalid URL escape in {what}: {text!r}")
    return unquote_to_bytes(text).decode("utf-8", "replace")


def parsed_path(path: str) -> list[str]:
    """OPA-Envoy's ``parsed_path`` of the path as sent (query cut off, decoded, leading ``/`` trimmed)."""
    raw = path.partition("?")[0]
    return _unescape(raw, "path", plus_is_space=False).lstrip("/").split("/")


def parse_query(query: str) -> dict[str, list[str]]:
    """Go's ``url.ParseQuery``: ``&``-separated ``key=value`` pairs, each list in order."""
    values: dict[str, list[str]] = {}
    for item in query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        if ";" in key:
            raise InputError(f"invalid semicolon separator in query: {item!r}")
        values.setdefault(_unescape(key, "query", True), []).append(_unescape(value, "query", True))
    return values


def _truncated(headers: Mapping[str, str], body_length: int) -> bool:
    declared = headers.get("content-length")
    if declared is None:
        return False
    try:
        length = int(declared)
    except ValueError:
        raise InputError(f"content-length is not a number: {declared!r}") from None
    return length != -1 and length > body_length


def _multipart(content_type: str, payload: bytes) -> dict[str, list[Any]] | None:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + payload)
    if not message.get_param("boundary"):
        return None
    if not message.is_multipart():
        raise InputError("multipart/form-data body has no parts for its boundary")
    values: dict[str, list[Any]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        raw = part.get_payload(decode=True)
        data = raw if isinstance(raw, bytes) else b""  # decode=True gives bytes (or None)
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        if "application/json" in (part.get("content-type") or ""):
            try:
                value: Any = json.loads(data)
            except ValueError as exc:
                raise InputError(f"multipart part {name!r} is not valid JSON: {exc}") from None
        else:
            value = data.decode("utf-8", "replace")
        values.setdefault(str(name), []).append(value)
    return values


def parsed_body(headers: Mapping[str, str], body: Any) -> tuple[Any, bool]:
    """OPA-Envoy's (``parsed_body``, ``truncated_body``) for the request's headers and body.

    ``body`` is the text, or an object whose ``text()`` gives it when parsing needs it.
    """
    if headers.get("x-envoy-auth-partial-body") == "true":
        return None, True
    content_type = headers.get("content-type")
    if content_type is None:
        return None, False
    if body is not None and not isinstance(body, str):
        kinds = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")
        if not any(kind in content_type for kind in kinds):
            return None, False
        body = body.text()
    if not body:
        return None, False
    kinds = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")
    if "application/grpc" in content_type and "application/json" not in content_type:
        return None, False  # decoding needs the service's descriptors, which OPA-Envoy is given and we are not
    if not any(kind in content_type for kind in kinds):
        return None, False
    payload = body.encode("utf-8")
    if _truncated(headers, len(payload)):
        return None, True
    if "application/json" in content_type:
        try:
            return json.loads(body), False
        except ValueError as exc:
            raise InputError(f"request body is not valid JSON: {exc}") from None
    if "application/x-www-form-urlencoded" in content_type:
        return parse_query(body), False
    return _multipart(content_type, payload), False


_HTTP = ("request", "http")
_BODY_HEADERS = ("content-type", "content-length", "x-envoy-auth-partial-body")


def _key(path: tuple[str, ...]) -> str:
    return json.dumps(list(path), separators=(",", ":"), ensure_ascii=False)


def _fetch(paths: Mapping[str, str], path: tuple[str, ...]) -> Any:
    """The value at ``path`` of the AttributeContext (None when absent); the lookup is a cache read."""
    text = paths.get(_key(path))
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"envoy_input {_key(path)} is not JSON: {exc}") from None


def _place(document: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    if not path:
        if not isinstance(value, dict):
            raise InputError("envoy_input [] is not a JSON object")
        return value
    node = document
    for step in path[:-1]:
        child = node.get(step)
        if not isinstance(child, dict):
            child = node[step] = {}
        node = child
    node[path[-1]] = value
    return document


def _attribute_paths(reach: frozenset[tuple[str, ...]] | None) -> list[tuple[str, ...]]:
    if reach is None:
        return [()]
    wanted = [p[1:] for p in reach if p[0] == "attributes"]
    if any(p[0] == "source_principal" for p in reach):
        wanted.append(("source", "principal"))
    return sorted(minimal(wanted), key=len)


def input_from_paths(paths: Mapping[str, str], reach: frozenset[tuple[str, ...]] | None,
                     skip_body: bool = False) -> dict[str, Any]:
    """OPA-Envoy's input built from the AttributeContext looked up by path (``envoy_input``).

    Only what the policy can reach (``reach``, from :mod:`adapters.opa._reach`; None: the
    whole document) is looked up, plus what OPA-Envoy always parses (the path; the body
    and the headers deciding how, unless ``skip_body``), since a request it cannot parse
    is answered 400 whether the policy reads the result or not.
    """
    attributes: dict[str, Any] = {}
    for path in _attribute_paths(reach):
        value = _fetch(paths, path)
        if value is not None:
            attributes = _place(attributes, path, value)
    raw_path = _fetch(paths, (*_HTTP, "path"))
    document = _document(attributes, raw_path if isinstance(raw_path, str) else "")
    if not skip_body:
        headers = {}
        for name in _BODY_HEADERS:
            value = _fetch(paths, (*_HTTP, "headers", name))
            if isinstance(value, str):
                headers[name] = value
        document["parsed_body"], document["truncated_body"] = parsed_body(headers, _LazyBody(paths))
    principal = attributes.get("source", {}).get("principal") if isinstance(attributes.get("source"), dict) else None
    if principal and (reach is None or any(p[0] == "source_principal" for p in reach)):
        document["source_principal"] = principal
    return document


def _document(attributes: dict[str, Any], path: str) -> dict[str, Any]:
    """OPA-Envoy's input document without its body: the attributes, the version and the parsed path and query."""
    return {
        "attributes": attributes,
        "version": dict(VERSION),
        "parsed_path": parsed_path(path),
        "parsed_query": parse_query(path.partition("?")[2]),
    }


class _LazyBody:
    """The request body (``body``, else ``rawBody`` decoded), looked up only when parsing needs it."""

    __slots__ = ("_paths", "_text")

    def __init__(self, paths: Mapping[str, str]) -> None:
        self._paths = paths
        self._text: str | None = None

    def text(self) -> str:
        if self._text is None:
            body = _fetch(self._paths, (*_HTTP, "body"))
            if not body:
                raw = _fetch(self._paths, (*_HTTP, "rawBody"))
                body = base64.b64decode(raw).decode("utf-8", "replace") if isinstance(raw, str) and raw else ""
            self._text = body if isinstance(body, str) else ""
        return self._text


def envoy_input(instance: Any, skip_body: bool = False,
                reach: frozenset[tuple[str, ...]] | None = None) -> dict[str, Any]:
    """OPA-Envoy's input document for a ``requestcontext`` instance (see the module docstring)."""
    paths = getattr(instance, "envoy_input", None)
    if paths is not None and not getattr(instance, "envoy_attributes", None):
        return input_from_paths(paths, reach, skip_body)
    headers = dict(instance.request_headers or {})
    path = instance.request_path or headers.get(":path") or ""
    verbatim = getattr(instance, "envoy_attributes", None)
    attributes = _verbatim(verbatim) if verbatim else _attributes(instance, headers, path)
    document = _document(attributes, path)
    if not skip_body:
        document["parsed_body"], document["truncated_body"] = parsed_body(headers, instance.request_body)
    if instance.source_principal:
        document["source_principal"] = instance.source_principal
    return document


def _verbatim(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(f"envoy_attributes is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError("envoy_attributes is not a JSON object")
    return value


def _attributes(instance: Any, headers: dict[str, str], path: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if instance.request_protocol != "tcp":
        http: dict[str, Any] = {}
        for key, value in (("id", instance.request_id), ("method", instance.request_method),
                           ("path", path), ("host", instance.request_host),
                           ("scheme", instance.request_scheme), ("body", instance.request_body)):
            if value:  # protojson leaves out empty strings, as the template's defaults give for absent ones
                http[key] = value
        if headers:
            http["headers"] = headers
        if instance.request_size is not None:
            http["size"] = str(instance.request_size)  # int64 → string in protojson
        attributes["request"] = {"http": http}
    source = _address(instance.source_ip, instance.source_port)
    if instance.source_principal:
        source["principal"] = instance.source_principal
    if getattr(instance, "source_labels", None):
        source["labels"] = dict(instance.source_labels)
    if source:
        attributes["source"] = source
    destination = _address(instance.destination_ip, instance.destination_port)
    if instance.destination_principal:
        destination["principal"] = instance.destination_principal
    if instance.destination_labels:
        destination["labels"] = dict(instance.destination_labels)
    if destination:
        attributes["destination"] = destination
    if instance.context_extensions:
        attributes["contextExtensions"] = dict(instance.context_extensions)
    if instance.connection_sni:
        attributes["tlsSession"] = {"sni": instance.connection_sni}
    return attributes


def _present(pairs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pairs.items() if v}


def mixer_input(instance: Any) -> dict[str, Any]:
    """Mixer's opa adapter input for an ``authorization`` instance."""
    subject, action = instance.subject, instance.action
    sub = _present({"user": subject.user, "groups": [subject.groups] if subject.groups else None,
                    "properties": _jsonable(subject.properties or {})})
    act = _present({"namespace": action.namespace, "service": action.service, "method": action.method,
                    "path": action.path, "properties": _jsonable(action.properties or {})})
    return {"subject": sub, "action": act}


def build_input(instance: Any, skip_body: bool = False,
                reach: frozenset[tuple[str, ...]] | None = None) -> dict[str, Any]:
    """The input document for an instance: OPA-Envoy's for requestcontext, Mixer's for authorization.

    ``reach``: the input paths the policy can reach (None: all of them), see :mod:`adapters.opa._reach`.
    """
    if hasattr(instance, "subject") and hasattr(instance, "action"):
        return mixer_input(instance)
    return envoy_input(instance, skip_body, reach)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


__all__ = ["InputError", "VERSION", "build_input", "envoy_input", "input_from_paths", "mixer_input", "parse_query", "parsed_body",
           "parsed_path"]
