"""Templates: the typed shapes of the instances that rules build and adapters receive.

A template names its variety (check, quota or report) and its fields. A field is a
scalar of one :class:`ValueType` (``ANY`` accepts every type), a map of such values
(``dimensions``), or a nested group of fields (``subject`` and ``action`` of
``authorization``). Instances are plain frozen dataclasses, one class per template,
always carrying the instance ``name``; a field whose expression read an absent
attribute is None (maps simply lack the entry).
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policy.attributes import ValueType


class Variety(enum.Enum):
    """Which adapter method a template's instances go to."""

    CHECK = "check"
    QUOTA = "quota"
    REPORT = "report"


@dataclass(frozen=True, slots=True)
class ValueMap:
    """A field holding a map of name → value, each an expression of ``value_type``."""

    value_type: ValueType = ValueType.ANY


@dataclass(frozen=True)
class Template:
    """A template: its name, variety, fields and the factory that makes instances.

    ``factory`` is called with ``name=`` and one keyword per field (nested groups as
    dicts), and returns the instance the adapter receives.
    """

    name: str
    variety: Variety
    fields: Mapping[str, Any]
    factory: Callable[..., Any]
    description: str = ""
    #: Expression texts used for fields an instance's params leave out (same shape as ``fields``).
    defaults: Mapping[str, Any] = field(default_factory=dict)


# --- instance types ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckNothing:
    """An instance of ``checknothing``: no data, only that a check happened."""

    name: str


@dataclass(frozen=True, slots=True)
class ListEntry:
    """An instance of ``listentry``: one value to look up in a list."""

    name: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class Subject:
    """The caller in an ``authorization`` instance."""

    user: str | None = None
    groups: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Action:
    """What the caller wants to do, in an ``authorization`` instance."""

    namespace: str | None = None
    service: str | None = None
    method: str | None = None
    path: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Authorization:
    """An instance of ``authorization``: a subject and an action."""

    name: str
    subject: Subject = field(default_factory=Subject)
    action: Action = field(default_factory=Action)


@dataclass(frozen=True, slots=True)
class Quota:
    """An instance of ``quota``: the dimensions that pick a counter."""

    name: str
    dimensions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Metric:
    """An instance of ``metric``: one value with dimensions."""

    name: str
    value: Any = None
    dimensions: Mapping[str, Any] = field(default_factory=dict)
    monitored_resource_type: str | None = None
    monitored_resource_dimensions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """An instance of ``logentry``: one log record."""

    name: str
    variables: Mapping[str, Any] = field(default_factory=dict)
    timestamp: _dt.datetime | None = None
    severity: str | None = None
    monitored_resource_type: str | None = None
    monitored_resource_dimensions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReportNothing:
    """An instance of ``reportnothing``: no data, only that a report happened."""

    name: str


def _authorization(name: str, subject: Mapping[str, Any] | None = None,
                   action: Mapping[str, Any] | None = None) -> Authorization:
    return Authorization(name, Subject(**(subject or {})), Action(**(action or {})))


S, ANY = ValueType.STRING, ValueType.ANY

BUILTIN_TEMPLATES: tuple[Template, ...] = (
    Template("checknothing", Variety.CHECK, {}, CheckNothing,
             "A check with no data."),
    Template("listentry", Variety.CHECK, {"value": ANY}, ListEntry,
             "One value to look up in a list (string or IP address)."),
    Template(
        "authorization", Variety.CHECK,
        {
            "subject": {"user": S, "groups": S, "properties": ValueMap()},
            "action": {"namespace": S, "service": S, "method": S, "path": S,
                       "properties": ValueMap()},
        },
        _authorization,
        "Who (subject) wants to do what (action).",
    ),
    Template("quota", Variety.QUOTA, {"dimensions": ValueMap()}, Quota,
             "Dimensions that pick a quota counter."),
    Template(
        "metric", Variety.REPORT,
        {"value": ANY, "dimensions": ValueMap(), "monitored_resource_type": S,
         "monitored_resource_dimensions": ValueMap()},
        Metric, "One measured value with dimensions.",
    ),
    Template(
        "logentry", Variety.REPORT,
        {"variables": ValueMap(), "timestamp": ValueType.TIMESTAMP, "severity": S,
         "monitored_resource_type": S, "monitored_resource_dimensions": ValueMap()},
        LogEntry, "One log record.",
    ),
    Template("reportnothing", Variety.REPORT, {}, ReportNothing,
             "A report with no data."),
)
