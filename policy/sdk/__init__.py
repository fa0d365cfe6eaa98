"""The public plugin SDK: everything an adapter author imports (also re-exported by ``policy``)."""

from __future__ import annotations

import pluggy

from policy.attributes import ValueType
from policy.expr.regex import Regex, RegexError, compile_regex
from policy.expr.regex import escape as regex_escape
from policy.sdk.adapter import Adapter, BuildContext, Clock, FailMode, Handler
from policy.sdk.contracts import (
    AdapterRegistrar,
    Documents,
    MetricsRegistry,
    RateLimitAnswer,
    RateLimitCounter,
    RateLimitHandler,
    ServiceView,
    SnapshotView,
    TemplateRegistrar,
)
from policy.sdk.errors import AdapterError, ConfigError, ConfigIssue, PluginError, PolicyError
from policy.sdk.params import FieldError, NoParams, ParamsError, describe_params, param, parse_duration, parse_params
from policy.sdk.results import CheckResult, HeaderOperation, HeaderOperationKind, QuotaArgs, QuotaResult
from policy.sdk.status import OK, Code, Status, http_status, parse_code
from policy.sdk.templates import (
    Action,
    Authorization,
    CheckNothing,
    ListEntry,
    LogEntry,
    Metric,
    Quota,
    ReportNothing,
    Subject,
    Template,
    ValueMap,
    Variety,
)

#: The project name pluggy knows hooks by.
PROJECT = "policy"

#: Mark a plugin function as a hook implementation: ``@hookimpl def policy_...``.
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Mark a function in :mod:`policy.hookspecs` as a hook specification.
hookspec = pluggy.HookspecMarker(PROJECT)

__all__ = [
    "PROJECT", "hookimpl", "hookspec",
    "Adapter", "BuildContext", "Clock", "FailMode", "Handler",
    "AdapterRegistrar", "Documents", "MetricsRegistry", "RateLimitAnswer", "RateLimitCounter",
    "RateLimitHandler", "ServiceView", "SnapshotView", "TemplateRegistrar",
    "AdapterError", "ConfigError", "ConfigIssue", "PluginError", "PolicyError",
    "FieldError", "NoParams", "ParamsError", "describe_params", "param", "parse_duration",
    "parse_params",
    "CheckResult", "HeaderOperation", "HeaderOperationKind", "QuotaArgs", "QuotaResult",
    "OK", "Code", "Status", "http_status", "parse_code",
    "Action", "Authorization", "CheckNothing", "ListEntry", "LogEntry", "Metric", "Quota",
    "ReportNothing", "Subject", "Template", "ValueMap", "ValueType", "Variety",
    "Regex", "RegexError", "compile_regex", "regex_escape",
]
