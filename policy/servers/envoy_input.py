"""OPA-Envoy's ``input`` document for an ext_authz v3 ``CheckRequest``, and how a bag carries the request.

:func:`envoy_input` builds the document an OPA policy written for
``opa-envoy-plugin`` expects (``envoyauth/request.go``):

* ``attributes``: the request's ``AttributeContext`` in protobuf's JSON mapping
  (lowerCamelCase names, int64 as strings, timestamps as RFC 3339), as Go's protojson writes it;
* ``parsed_path``: the URL path percent-decoded and split on ``/`` after trimming leading ``/``
  (``"/"`` gives ``[""]``);
* ``parsed_query``: each query parameter's values, as a list (``?a=1&a=2`` → ``{"a": ["1", "2"]}``);
* ``parsed_body``: the body parsed by its ``content-type`` (JSON; form-urlencoded → lists of
  values; multipart/form-data → lists of values, JSON parts parsed), else None. gRPC bodies
  are not decoded (that needs the service's descriptors) and give None;
* ``truncated_body``: true when ``content-length`` says the body sent is shorter than the
  request's (Envoy's ``with_request_body`` limit cut it); ``parsed_body`` is then None;
* ``version``: ``{"ext_authz": "v3", "encoding": "protojson"}``.

**How adapters reach the request.** The ext_authz server puts the parsed
``CheckRequest`` into the request's attribute bag under :data:`ENVOY_REQUEST_KEY`
(``"@envoy.check_request"``). The name is not in the vocabulary and is not a valid
identifier, so no expression can read it; the decision cache keys only on what
expressions read, so the entry never touches a cache key, and carrying it costs one
dict entry (the input document is only built when asked for). Code that has the bag
calls :func:`envoy_input_from_bag`; an adapter whose decision depends on the whole
request must answer results that are not cacheable (``valid_duration`` 0 or None),
since the cache cannot see what it read.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

from google.protobuf import json_format

from policy.servers.envoy_attributes import split_path

__all__ = ["ENVOY_REQUEST_KEY", "EnvoyInputError", "VERSION", "envoy_input", "envoy_input_from_bag"]

#: The bag key under which the ext_authz server keeps the parsed ``CheckRequest``.
ENVOY_REQUEST_KEY = "@envoy.check_request"

#: The ``version`` member of the input document (OPA-Envoy's for ext_authz v3).
VERSION: Mapping[str, str] = {"ext_authz": "v3", "encoding": "protojson"}


class EnvoyInputError(ValueError):
    """The request's body could not be parsed as its content-type says (OPA-Envoy errs too)."""


def _parsed_path(url_path: str) -> list[str]:
    return unquote(url_path).lstrip("/").split("/")


def _truncated(headers: Mapping[str, str], body_length: int) -> bool:
    declared = headers.get("content-length")
    if declared is None:
        return False
    try:
        length = int(declared)
    except ValueError:
        raise EnvoyInputError(f"content-length is not a number: {declared!r}") from None
    return length != -1 and length > body_length


def _multipart(content_type: str, payload: bytes) -> dict[str, list[Any]] | None:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + payload)
    if not message.get_param("boundary"):
        return None
    if not message.is_multipart():
        raise EnvoyInputError("multipart/form-data body has no parts for its boundary")
    values: dict[str, list[Any]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        data = part.get_payload(decode=True) or b""
        if "application/json" in part.get_content_type():
            try:
                value: Any = json.loads(data)
            except ValueError as exc:
                raise EnvoyInputError(f"multipart part {name!r} is not valid JSON: {exc}") from None
        else:
            value = data.decode("utf-8", "replace")
        values.setdefault(name, []).append(value)
    return values


def _parsed_body(headers: Mapping[str, str], body: str, raw_body: bytes) -> tuple[Any, bool]:
    content_type = headers.get("content-type")
    if content_type is None:
        return None, False
    if not any(kind in content_type for kind in
               ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")):
        return None, False  # gRPC and other bodies are not decoded
    payload = body.encode("utf-8") if body else raw_body
    if not payload:
        return None, False
    if _truncated(headers, len(payload)):
        return None, True
    if "application/json" in content_type:
        try:
            return json.loads(payload), False
        except ValueError as exc:
            raise EnvoyInputError(f"body is not valid JSON: {exc}") from None
    if "application/x-www-form-urlencoded" in content_type:
        return parse_qs(payload.decode("utf-8", "replace"), keep_blank_values=True), False
    return _multipart(content_type, payload), False


def envoy_input(check_request: Any) -> dict[str, Any]:
    """OPA-Envoy's ``input`` document for an ext_authz v3 ``CheckRequest`` (see the module docstring).

    :raises EnvoyInputError: a JSON or multipart body that does not parse, a bad content-length.
    """
    attributes = check_request.attributes
    http = attributes.request.http
    url_path, query = split_path(http.path)
    headers = dict(http.headers)
    parsed_body, truncated = _parsed_body(headers, http.body, http.raw_body)
    return {
        "attributes": json_format.MessageToDict(attributes),
        "parsed_path": _parsed_path(url_path),
        "parsed_query": parse_qs(query, keep_blank_values=True) if query else {},
        "parsed_body": parsed_body,
        "truncated_body": truncated,
        "version": dict(VERSION),
    }


def envoy_input_from_bag(bag: Mapping[str, Any]) -> dict[str, Any] | None:
    """The input document of the ``CheckRequest`` a bag came from, or None (not an ext_authz request)."""
    request = bag.get(ENVOY_REQUEST_KEY)
    return None if request is None else envoy_input(request)
