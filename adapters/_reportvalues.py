"""Value conversions the report adapters (prometheus, statsd, dogstatsd, fluentd) share.

``stringify`` turns a dimension into a label or tag value the way Mixer's
``adapter.Stringify`` did; ``to_number`` turns a metric value into a float the way
Mixer's prometheus adapter did (durations in seconds, numeric strings parsed);
``go_duration`` and ``rfc3339`` print durations and times as Go does. A private
helper of the built-in adapters, not part of the SDK.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any


_UTC = dt.timezone.utc


def go_duration(value: dt.timedelta) -> str:
    """A duration as Go prints it: ``250ms``, ``1.5s``, ``2m30s``, ``1h0m0s``."""
    total = value.total_seconds()
    sign, total = ("-", -total) if total < 0 else ("", total)
    if total == 0:
        return "0s"
    if total < 1:
        return f"{sign}{_trim(total * 1000)}ms"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    out = f"{int(hours)}h" if hours else ""
    out += f"{int(minutes)}m" if hours or minutes else ""
    return f"{sign}{out}{_trim(seconds)}s"


def _trim(number: float) -> str:
    return f"{number:.6f}".rstrip("0").rstrip(".")


def rfc3339(value: dt.datetime) -> str:
    """``2024-05-01T12:00:00.123456Z``: UTC with microseconds (a naive datetime is taken as UTC)."""
    if value.tzinfo is not _UTC:
        value = value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
    if value.year >= 1000:  # isoformat is C and 2x faster than strftime; both print YYYY-MM-DDTHH:MM:SS.ffffff
        return value.isoformat(timespec="microseconds")[:26] + "Z"
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # years before 1000 as strftime writes them


def format_float(value: float | int) -> str:
    """A float without exponent noise: integral values without ``.0`` (``3``), others by ``repr``."""
    if type(value) is int:
        return str(value)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def stringify(value: Any) -> str:
    """A dimension value as text: strings as they are, ``true``/``false``, numbers, Go durations,
    RFC 3339 times, maps as ``k1=v1&k2=v2`` (keys sorted), IP addresses and the rest by ``str``.
    None is the empty string."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, dt.timedelta):
        return go_duration(value)
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return "&".join(f"{k}={stringify(v)}" for k, v in sorted(value.items()))
    return str(value)


def to_number(value: Any) -> float:
    """A metric value as a float: numbers as they are, durations in seconds, numeric strings parsed.

    Raises ValueError naming the value for anything else (booleans, maps, non-numeric text).
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a number, a duration or a numeric string, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number, a duration or a numeric string, got {value!r}")
