"""The denier adapter: Mixer's defaults, custom statuses, params errors."""

from __future__ import annotations

import pytest

from adapters.denier import Denier
from policy import (
    Action,
    Authorization,
    CheckNothing,
    Code,
    ListEntry,
    ParamsError,
    Subject,
    describe_params,
    parse_params,
)

INSTANCES = [
    CheckNothing("cn"),
    ListEntry("le", "10.0.0.1"),
    Authorization("az", Subject(user="alice"), Action(method="GET", path="/")),
]


@pytest.mark.parametrize("instance", INSTANCES, ids=lambda i: type(i).__name__)
def test_defaults_are_mixers(build, instance):
    handler = build(Denier)
    result = handler.check(instance)
    assert result.status.code is Code.FAILED_PRECONDITION
    assert result.status.message == ""
    assert result.valid_duration == 5.0
    assert result.valid_use_count == 1000


@pytest.mark.parametrize("code", ["PERMISSION_DENIED", "permission_denied", 7, "7"])
def test_custom_status_code_by_name_or_number(build, code):
    handler = build(Denier, {"status": {"code": code, "message": "go away"},
                             "validDuration": "1m30s", "validUseCount": 3})
    result = handler.check(CheckNothing("cn"))
    assert result.status.code is Code.PERMISSION_DENIED
    assert result.status.message == "go away"
    assert (result.valid_duration, result.valid_use_count) == (90.0, 3)


def test_zero_valid_duration_means_do_not_cache(build):
    result = build(Denier, {"validDuration": "0s"}).check(CheckNothing("cn"))
    assert result.valid_duration == 0.0
    assert not result.status.ok


def test_status_ok_allows_as_in_mixer(build):
    assert build(Denier, {"status": {"code": "OK"}}).check(CheckNothing("cn")).status.ok


def test_validate_names_the_fields():
    params = parse_params(Denier.Params, {"status": {"code": "NOPE"}, "validUseCount": -1})
    errors = {e.field: e.message for e in Denier.validate(params)}
    assert set(errors) == {"status.code", "validUseCount"}
    assert "NOPE" in errors["status.code"]


def test_schema_errors_carry_paths():
    with pytest.raises(ParamsError) as info:
        parse_params(Denier.Params, {"status": {"cod": 7}, "validDuration": "soon"})
    assert {e.field for e in info.value.errors} == {"status.cod", "validDuration"}


def test_every_param_is_documented():
    rows = describe_params(Denier.Params)
    assert {r["name"] for r in rows} >= {"status", "status.code", "status.message", "validDuration",
                                        "validUseCount"}
    assert all(r["doc"] for r in rows)
