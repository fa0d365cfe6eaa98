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
    """A field holding a map of name → value, each an expression of ``value_type``.

    :param value_type: the type every value's expression must have (ANY: no constraint).
    """

    value_type: ValueType = ValueType.ANY


@dataclass(frozen=True)
class Template:
    """A template: its name, variety, fields and the factory that makes instances.

    ``factory`` is called with ``name=`` and one keyword per field (nested groups as
    dicts), and returns the instance the adapter receives.

    :param name: the template's name in config (``listentry``, ``metric`` ...).
    :param variety: which handler method its instances go to.
    :param fields: field name → kind: a :class:`~policy.attributes.ValueType`, a :class:`ValueMap`,
        or a mapping of nested fields.
    :param factory: makes an instance from ``name=`` and the evaluated fields.
    :param description: one line for ``policy adapters`` and the docs.
    :param defaults: expression texts used for fields an instance's params leave out.
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
    """An instance of ``checknothing``: no data, only that a check happened.

    :param name: the instance's name in config (``name.instance.namespace`` for Mixer documents).
    """

    name: str


@dataclass(frozen=True, slots=True)
class ListEntry:
    """An instance of ``listentry``: one value to look up in a list.

    :param name: the instance's name in config (``name.instance.namespace`` for Mixer documents).
    :param value: the value to look up (its type is the expression's: a string, an IP address ...).
    """

    name: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class Subject:
    """The caller in an ``authorization`` instance.

    :param user: the caller's identity (Mixer's ``subject.user``, often ``source.principal``).
    :param groups: the caller's groups, as one string.
    :param properties: further named values about the caller.
    """

    user: str | None = None
    groups: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Action:
    """What the caller wants to do, in an ``authorization`` instance.

    :param namespace: the destination's namespace.
    :param service: the destination service.
    :param method: the request method (``GET`` ...).
    :param path: the request path.
    :param properties: further named values about the action.
    """

    namespace: str | None = None
    service: str | None = None
    method: str | None = None
    path: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Authorization:
    """An instance of ``authorization``: a subject and an action.

    :param name: the instance's name in config (``name.instance.namespace`` for Mixer documents).
    :param subject: who is asking.
    :param action: what they ask to do.
    """

    name: str
    subject: Subject = field(default_factory=Subject)
    action: Action = field(default_factory=Action)


@dataclass(frozen=True, slots=True)
class Quota:
    """An instance of ``quota``: the dimensions that pick a counter.

    :param name: the instance's name in config (``name.instance.namespace`` for Mixer documents).
    :param dimensions: name → value; each distinct combination is its own counter.
    """

    name: str
    dimensions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Metric:
    """An instance of ``metric``: one value with dimensions.

    :param name: the instance's name in config (``name.instance.namespace`` for Mixer documents).
    :param value: the measured value.
    :param dimensions: name → value labels of the measurement.
    :param monitored_resource_type: Mixer's monitored resource type, when given.
    :param monitored_resource_dimensions: Mixer's monitored resource dimensions.
    """

    name: str
    value: Any = None
    dimensions: Mapping[str, Any] = field(default_factory=dict)
    monitored_resource_type: str | None = None
    monitored_resource_dimensions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """An instance of ``logentry``: one log record.

    :param name: the instance's name in config (``name.instance.namespace`` for Mixer documents).
    :param variables: name → value fields of the record.
    :param timestamp: when it happened (None: not given).
    :param severity: the severity text (``INFO``, ``ERROR`` ...), when given.
    :param monitored_resource_type: Mixer's monitored resource type, when given.
    :param monitored_resource_dimensions: Mixer's monitored resource dimensions.
    """

    name: str
    variables: Mapping[str, Any] = field(default_factory=dict)
    timestamp: _dt.datetime | None = None
    severity: str | None = None
    monitored_resource_type: str | None = None
    monitored_resource_dimensions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReportNothing:
    """An instance of ``reportnothing``: no data, only that a report happened.

    :param name: the instance's name in config (``name.instance.namespace`` for Mixer documents).
    """

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
