"""Structural checks shared by both document forms: where a value sits, and what it must look like.

Every check reports into a :class:`Reporter` instead of raising, so one pass over
the config finds every problem. A :class:`Where` names the file, the document label
and the field path (``spec.actions[0].handler``) of the value being checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from policy.sdk import ConfigIssue

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def join(*parts: str) -> str:
    """Join field path parts with dots; index parts (``[3]``) attach without one."""
    out = ""
    for part in parts:
        if not part:
            continue
        if not out:
            out = part
        elif part.startswith("["):
            out += part
        else:
            out += "." + part
    return out


def key_part(key: Any) -> str:
    """A mapping key as a path part: ``name`` when it reads as one, else ``['a.b']``."""
    text = str(key)
    return text if _PLAIN_KEY.match(text) else f"[{text!r}]"


@dataclass(frozen=True)
class Where:
    """Where a value sits: the file, the document's label and the field path in it."""

    file: str
    document: str
    field: str = ""

    def at(self, *parts: str | int) -> "Where":
        """The place of a value inside this one (ints become ``[i]``)."""
        text = [f"[{p}]" if isinstance(p, int) else p for p in parts]
        return replace(self, field=join(self.field, *text))

    def relabel(self, document: str) -> "Where":
        """The same place under another document label."""
        return replace(self, document=document)


@dataclass
class Reporter:
    """Collects errors and warnings, each a :class:`ConfigIssue`."""

    errors: list[ConfigIssue] = field(default_factory=list)
    warnings: list[ConfigIssue] = field(default_factory=list)

    def error(self, where: Where, message: str) -> None:
        """Record an error at ``where``."""
        self.errors.append(ConfigIssue(where.file, where.document, where.field, message))

    def warn(self, where: Where, message: str) -> None:
        """Record a warning at ``where``."""
        self.warnings.append(ConfigIssue(where.file, where.document, where.field, message, "warning"))


def describe(value: Any) -> str:
    """A short description of a value for messages: its YAML kind and a preview."""
    kind = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value))
    if kind is None:
        kind = "a mapping" if isinstance(value, Mapping) else type(value).__name__
    preview = repr(value)
    if len(preview) > 60:
        preview = preview[:57] + "..."
    return kind if value is None else f"{kind} {preview}"


def mapping(
    value: Any,
    where: Where,
    reporter: Reporter,
    allowed: Iterable[str] | None = None,
    *,
    optional: bool = True,
) -> dict[str, Any] | None:
    """Check that ``value`` is a mapping (null counts as empty when ``optional``).

    With ``allowed``, every other key is reported as unknown (and left out).
    Returns the mapping with string keys, or None when it is not a mapping.
    """
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        reporter.error(where, f"expected a mapping, got {describe(value)}")
        return None
    out = {str(k): v for k, v in value.items()}
    if allowed is not None:
        known = list(allowed)
        for key in list(out):
            if key not in known:
                reporter.error(where.at(key_part(key)), f"unknown field (known: {', '.join(known)})")
                del out[key]
    return out


def sequence(value: Any, where: Where, reporter: Reporter) -> list[Any] | None:
    """Check that ``value`` is a list (null counts as empty); None when it is not."""
    if value is None:
        return []
    if not isinstance(value, list):
        reporter.error(where, f"expected a list, got {describe(value)}")
        return None
    return value


def name_text(value: Any, where: Where, reporter: Reporter, *, what: str = "a name",
              required: bool = True, dots: bool = True) -> str | None:
    """Check a name: a non-empty string (numbers are accepted as text); None when missing or bad."""
    if value is None or value == "":
        if required:
            reporter.error(where, f"{what} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        reporter.error(where, f"expected {what} (a string), got {describe(value)}")
        return None
    text = str(value).strip()
    if not text or any(c.isspace() for c in text):
        reporter.error(where, f"{what} cannot be empty or contain whitespace, got {value!r}")
        return None
    if not dots and "." in text:
        reporter.error(where, f"{what} cannot contain '.' (it separates name, kind and namespace"
                              f" in references), got {text!r}")
        return None
    return text


def expression_text(value: Any, where: Where, reporter: Reporter) -> str | None:
    """The text of an expression written as a YAML scalar; None (reported) when it is not one.

    YAML turns ``true`` and ``42`` into a bool and a number; they are read back as
    the expressions ``true`` and ``42``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        if not value.strip():
            reporter.error(where, "empty expression")
            return None
        return value
    reporter.error(where, f"expected an expression (a string), got {describe(value)}")
    return None


__all__ = [
    "Reporter", "Where", "describe", "expression_text", "join", "key_part", "mapping",
    "name_text", "sequence",
]
