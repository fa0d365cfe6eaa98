"""Params schemas: field-scoped errors, durations, enums, nesting, docs."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Literal

import pytest

from policy.sdk import (
    Code,
    FieldError,
    NoParams,
    ParamsError,
    Status,
    describe_params,
    http_status,
    param,
    parse_code,
    parse_duration,
    parse_params,
)


class Mode(enum.Enum):
    FAST = "FAST"
    SAFE = "SAFE"


@dataclass(frozen=True)
class Override:
    max_amount: int = param(doc="max")
    dimensions: dict[str, str] = param(default_factory=dict, doc="dims")


@dataclass(frozen=True)
class Params:
    name: str = param(doc="the name")
    valid_duration: dt.timedelta = param(dt.timedelta(seconds=5), doc="how long")
    overrides: list[Override] = param(default_factory=list, doc="overrides")
    mode: Mode = param(Mode.SAFE, doc="mode")
    ratio: float = param(0.5, doc="a ratio")
    flag: bool = param(False, doc="a flag")
    level: Literal["low", "high"] = param("low", doc="a level")
    limit: int | None = param(None, doc="an optional limit")


def test_camel_case_and_snake_case_keys_both_work():
    parsed = parse_params(Params, {"name": "n", "valid_duration": "1m30s",
                                   "overrides": [{"maxAmount": 3, "dimensions": {"a": "b"}}]})
    assert parsed.valid_duration == dt.timedelta(seconds=90)
    assert parsed.overrides == [Override(3, {"a": "b"})]
    camel = parse_params(Params, {"name": "n", "validDuration": "2s"})
    assert camel.valid_duration == dt.timedelta(seconds=2)
    assert parsed.mode is Mode.SAFE and parsed.limit is None


def test_every_problem_is_reported_with_its_field_path():
    with pytest.raises(ParamsError) as err:
        parse_params(Params, {"validDuration": "soon", "overrides": [{"maxAmount": "x"}, {"bogus": 1}],
                              "mode": "QUICK", "ratio": "half", "flag": "yes", "level": "mid", "extra": 1})
    fields = {e.field: e.message for e in err.value.errors}
    assert "name" in fields and "required" in fields["name"]
    assert "duration" in fields["validDuration"]
    assert "integer" in fields["overrides[0].maxAmount"]
    assert "unknown field" in fields["overrides[1].bogus"]
    assert "required" in fields["overrides[1].maxAmount"]
    assert "FAST" in fields["mode"]
    assert "number" in fields["ratio"]
    assert "true or false" in fields["flag"]
    assert "'low'" in fields["level"]
    assert "unknown field" in fields["extra"]


def test_no_params_accepts_nothing_else():
    assert parse_params(NoParams, None) == NoParams()
    with pytest.raises(ParamsError, match="unknown field"):
        parse_params(NoParams, {"x": 1})


@pytest.mark.parametrize("text, seconds", [("10s", 10), ("1h30m", 5400), ("250ms", 0.25), (3, 3),
                                           ("1.5s", 1.5), ("0", 0), ("2d", 172800)])
def test_durations(text, seconds):
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["ten seconds", "10", "-5s", -1, True, "5 s"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_describe_params_flattens_nested_fields_with_docs():
    rows = {r["name"]: r for r in describe_params(Params)}
    assert rows["name"]["required"] and rows["name"]["doc"] == "the name"
    assert rows["validDuration"]["type"] == "duration"
    assert rows["overrides[].maxAmount"]["type"] == "integer"
    assert rows["mode"]["type"] == "FAST | SAFE"
    assert rows["limit"]["type"] == "integer (optional)"


def test_codes_and_http_mapping():
    assert parse_code("permission_denied") is Code.PERMISSION_DENIED
    assert parse_code(7) is Code.PERMISSION_DENIED and parse_code("14") is Code.UNAVAILABLE
    with pytest.raises(ValueError, match="not a status code"):
        parse_code("NOPE")
    assert [http_status(c) for c in (Code.OK, Code.PERMISSION_DENIED, Code.UNAUTHENTICATED,
                                     Code.RESOURCE_EXHAUSTED, Code.UNAVAILABLE, Code.INVALID_ARGUMENT)] == [
        200, 403, 401, 429, 503, 400]
    assert str(Status(Code.PERMISSION_DENIED, "no")) == "PERMISSION_DENIED:no"
    assert str(FieldError("a.b", "bad")) == "a.b: bad"
