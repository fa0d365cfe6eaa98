"""Mixer's CEXL test table, run against our expression language.

``tests.json`` is a mechanical dump of ``TestData`` in istio/istio 1.6.9
``mixer/pkg/il/testing/tests.go`` (``gen/`` rebuilds it); each case keeps its index,
line and name there. Per case we check what the table states: a compile (type or
syntax) error, or the result of evaluating against the attribute bag, or the
evaluation error, the expression's type, and the referenced attributes in Mixer's
notation (``name``, ``-name`` for absent, ``map[key]`` / ``-map[key]``). Cases that
cannot apply are listed with their reason in EXCLUDED.md and in ``EXCLUDED`` below.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from policy.attributes import AttributeBag, RecordingBag, ValueType
from policy.expr import EvaluationError, ExpressionError, compile_expression
from policy.expr import functions as fn
from policy.expr.checker import Checker, Kind
from policy.expr.grammar import parse

HERE = Path(__file__).parent
TABLE = json.loads((HERE / "tests.json").read_text())
SOURCE = TABLE["source"]

#: index → reason; kept in step with EXCLUDED.md (a test checks both agree).
EXCLUDED: dict[int, str] = {
    39: "the bag holds a Go int for a STRING attribute; our bags are typed where requests "
        "enter (a mistyped attribute is refused there), so no expression sees one",
}

#: Cases where Mixer fails at evaluation and we refuse the expression when it is compiled,
#: because a call on constants is evaluated then (README, Mixer section).
FOLDED_AT_COMPILE: set[int] = {45, 48, 101, 122, 142}

#: Cases whose ``matches`` pattern is an attribute: we refuse a pattern that is not a
#: constant when the config loads (a request value as a regex could be made to hang
#: the service; README "Under load and attack"), where Mixer evaluated it.
NON_CONSTANT_PATTERN: set[int] = {361, 362}

#: Cases whose error ends in the wording of a Go library (idna, net/mail): we check
#: Mixer's message up to that part.
GO_LIBRARY_WORDING: set[int] = {101, 103, 122}

#: Cases whose referenced attributes differ on purpose, with the reason (EXCLUDED.md).
REFERENCED_DIFFERENCE: dict[int, str] = {
    209: "Mixer reports the map ar as present although no key was looked up in it (the key "
         "attribute abc was absent); we record a map only through the keys read, so the "
         "decision cache does not key on the whole map",
}


def _message_matches(case: dict, message: str) -> bool:
    expected = case["error"]
    if case["index"] in GO_LIBRARY_WORDING:
        expected = expected.split(": '")[0]
    return expected in message


def _value(encoded: dict | None, value_type: str | None = None) -> Any:
    if encoded is None:
        return None
    kind, value = encoded["type"], encoded["value"]
    if kind in ("bool", "string"):
        return value
    if kind == "float64":
        return float(value)
    if kind in ("int64", "int"):
        return int(value)
    if kind == "time":
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
    if kind == "duration_ns":
        return dt.timedelta(microseconds=int(value) / 1000)
    if kind == "string_map":
        return dict(value)
    if kind == "bytes":
        raw = bytes.fromhex(value)
        if value_type in (None, "IP_ADDRESS") and len(raw) in (4, 16):
            return fn.ip_canonical(ipaddress.ip_address(raw))
        return raw
    raise AssertionError(f"unknown encoded type {kind}")


def _vocabulary(case: dict) -> dict[str, Any]:
    # DNS_NAME, EMAIL_ADDRESS and URI are Mixer attribute types our vocabulary lacks;
    # the checker knows them as kinds, so the table's attributes of those types are
    # declared with the kind (README, Mixer section).
    types = TABLE["attributes"][case["conf"]]
    return {name: ValueType.__members__.get(t) or Kind[t] for name, t in types.items()}


def _bag(case: dict, vocabulary: dict[str, Any]) -> AttributeBag:
    values = {}
    for name, encoded in case["input"].items():
        declared = vocabulary.get(name)
        values[name] = _value(encoded, declared.name if declared is not None else None)
    return AttributeBag(values)


def mixer_referenced(bag: AttributeBag, reads: list) -> list[str]:
    """Our recorded reads in the notation of Mixer's FakeBag.ReferencedList."""
    out = set()
    for name, key in reads:
        present = bag.get(name) is not None
        out.add(name if present else "-" + name)
        if key is not None and present:
            out.add(f"{name}[{key}]" if key in bag.get(name) else f"-{name}[{key}]")
    return sorted(out)


def _same(expected: Any, got: Any, expected_type: str | None) -> bool:
    if isinstance(expected, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return isinstance(got, (ipaddress.IPv4Address, ipaddress.IPv6Address)) and fn.ip_equal(
            expected, got)
    if isinstance(expected, dict):
        return isinstance(got, Mapping) and dict(got) == expected
    return type(expected) is type(got) and expected == got


CASES = [pytest.param(c, id=f"{c['index']}:{c['name'][:60]}") for c in TABLE["cases"]]


@pytest.mark.parametrize("case", CASES)
def test_mixer_case(case: dict) -> None:
    where = f"{SOURCE} TestData[{case['index']}] (line {case['line']}) {case['name']!r}"
    if case["index"] in EXCLUDED:
        pytest.skip(f"excluded: {EXCLUDED[case['index']]}")
    vocabulary = _vocabulary(case)
    text = case["expression"]
    if case.get("compile_error"):
        with pytest.raises(ExpressionError):
            compile_expression(text, vocabulary)
        return
    if case["index"] in NON_CONSTANT_PATTERN:
        with pytest.raises(ExpressionError, match="constant"):
            compile_expression(text, vocabulary)
        return
    if case["index"] in FOLDED_AT_COMPILE:
        with pytest.raises(ExpressionError) as info:
            compile_expression(text, vocabulary)
        assert _message_matches(case, str(info.value)), where
        return
    compiled = compile_expression(text, vocabulary)
    if case.get("type"):
        kind = Checker(text, vocabulary).check(parse(text)).kind
        assert kind.name == case["type"], where
    bag = _bag(case, vocabulary)
    recording = RecordingBag(bag)
    if case.get("error"):
        with pytest.raises(EvaluationError) as info:
            compiled.evaluate(recording)
        assert _message_matches(case, str(info.value)), where
    else:
        got = compiled.evaluate(recording)
        expected = _value(case["result"], case.get("type"))
        assert _same(expected, got, case.get("type")), f"{where}: got {got!r}, want {expected!r}"
    if case["referenced"] is not None:
        ours = mixer_referenced(bag, recording.reads)
        if case["index"] in REFERENCED_DIFFERENCE:  # we record less than Mixer, never more
            assert set(ours) < set(case["referenced"]), where
        else:
            assert ours == sorted(case["referenced"]), where


def test_every_case_is_run_or_excluded_with_a_reason() -> None:
    listed = (HERE / "EXCLUDED.md").read_text()
    for index, reason in {**EXCLUDED, **REFERENCED_DIFFERENCE}.items():
        assert reason and f"| {index} |" in listed, index
    assert len(TABLE["cases"]) == 423
