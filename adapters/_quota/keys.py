"""Counter identifiers: a quota name and an instance's dimensions as one safe, bounded string.

Dimension values come from requests, so they are escaped (``%``-encoding of the
characters that structure the id and of Redis's hash-tag braces) and, when the
result would be long, replaced by a SHA-256 digest. Dimensions are sorted by
name, so the order an instance lists them in does not matter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from adapters._quota.params import dimension_text

#: Ids longer than this are hashed (bounds memory per counter and Redis key size).
MAX_ID_LENGTH = 200

_ESCAPES = {c: f"%{ord(c):02X}" for c in "%|=,{}\n\r\t :"}
_TABLE = str.maketrans(_ESCAPES)


def escape(text: str) -> str:
    """Escape the characters that structure ids (and Redis hash tags) in ``text``."""
    return text.translate(_TABLE)


def digest(text: str) -> str:
    """A short, stable digest of ``text`` (hex, 32 characters)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def counter_id(quota: str, dimensions: Mapping[str, Any], suffix: str = "") -> str:
    """The id of the counter for ``quota`` and ``dimensions`` (plus an optional ``suffix``)."""
    parts = [escape(quota)]
    for name in sorted(dimensions):
        parts.append(f"{escape(name)}={escape(dimension_text(dimensions[name]))}")
    if suffix:
        parts.append(escape(suffix))
    text = "|".join(parts)
    if len(text) > MAX_ID_LENGTH:
        return f"{escape(quota)[:64]}|#{digest(text)}"
    return text
