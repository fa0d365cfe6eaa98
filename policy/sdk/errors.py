"""The exception tree of sidecar-policy.

::

    PolicyError                      base of everything this package raises on purpose
    ├── ConfigError                  a config failed to load; .issues lists every problem
    │                                (file, document kind/name, field, message)
    ├── PluginError                  a plugin is broken: duplicate adapter name, bad hook result
    ├── AdapterError                 raised by an adapter at request time to answer a status
    │                                (code + message) instead of a crash
    ├── ParamsError                  adapter params failed validation; .errors are FieldErrors
    ├── VocabularyError              (policy.attributes) an unknown attribute or a type conflict
    ├── ExpressionError              (policy.expr) an expression failed to parse or type-check
    ├── TranslationError             (policy.servers) an Envoy request cannot become attributes
    └── CodecError                   (policy.servers) a native request's attributes are malformed

The last five are ValueErrors too (they were before they joined the tree), so
``except ValueError`` keeps catching them. ``except PolicyError`` catches all of these.

An adapter that raises anything else at request time is caught by the host and
turned into an INTERNAL status naming the handler, subject to its fail mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.error_base import PolicyError
from policy.sdk.params import FieldError, ParamsError
from policy.sdk.status import Code


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config: where it is and what is wrong.

    :param file: the config file.
    :param document: the document in it (``handlers[0] (name)``, ``handler/name.namespace``).
    :param field: the field path in the document; empty for the document as a whole.
    :param message: what is wrong.
    :param severity: ``error`` (the config is refused) or ``warning``.
    """

    file: str
    document: str
    field: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.file, self.document, self.field) if p)
        return f"{where}: {self.message}" if where else self.message


class ConfigError(PolicyError):
    """A config could not be loaded; ``issues`` lists every error found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        lines = "\n".join(f"  {i}" for i in issues)
        super().__init__(f"{len(issues)} config error(s):\n{lines}")


class PluginError(PolicyError):
    """A plugin is broken or conflicts with another (names both where it can).

    ``plugin`` and ``distribution`` name the plugin at fault (None / ``""`` when unknown).
    """

    def __init__(self, message: str, *, plugin: str | None = None, distribution: str = "") -> None:
        self.plugin = plugin
        self.distribution = distribution
        super().__init__(message)


class AdapterError(PolicyError):
    """Raised by an adapter to answer a specific status instead of an internal error."""

    def __init__(self, code: Code, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code.name}: {message}")


__all__ = [
    "AdapterError",
    "ConfigError",
    "ConfigIssue",
    "FieldError",
    "ParamsError",
    "PluginError",
    "PolicyError",
]
