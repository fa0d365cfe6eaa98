"""Mixer's extern (function) tests, externs_test.go, run through compiled expressions.

Each case of ``externs_cases.json`` names its Go test; its inputs are attribute values,
so the function runs at evaluation, as in a request, not folded at compile time.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from policy.attributes import AttributeBag, ValueType
from policy.expr import EvaluationError, compile_expression
from policy.expr.checker import Kind

TABLE = json.loads((Path(__file__).parent / "externs_cases.json").read_text())
VOCABULARY = {name: ValueType.__members__.get(t) or Kind[t] for name, t in TABLE["attributes"].items()}


def _constant_pattern(case: dict) -> tuple[str, dict]:
    """``t.matches(s)`` with the pattern ``t`` written as a constant: a pattern that is not
    a constant is refused at load (EXCLUDED.md), so the case runs as a config would say it."""
    inputs = dict(case["input"])
    pattern = inputs.pop("t")
    return case["expression"].replace("t.matches", json.dumps(pattern) + ".matches"), inputs


@pytest.mark.parametrize("case", TABLE["cases"],
                         ids=lambda c: f"{c['test']}:{json.dumps(c['input'])[:50]}")
def test_mixer_extern(case: dict) -> None:
    expression, inputs = case["expression"], case["input"]
    if case["test"] == "TestExternMatches":
        expression, inputs = _constant_pattern(case)
    compiled = compile_expression(expression, VOCABULARY)
    bag = AttributeBag(inputs)
    where = f"{TABLE['source']} {case['test']}"
    if case.get("error"):
        with pytest.raises(EvaluationError):
            compiled.evaluate(bag)
        return
    got = compiled.evaluate(bag)
    if "result_ip" in case:
        assert got == ipaddress.ip_address(case["result_ip"]), where
    elif "result_time" in case:
        assert got == dt.datetime.fromisoformat(case["result_time"]), where
    elif isinstance(case["result"], dict):
        assert isinstance(got, Mapping) and dict(got) == case["result"], where
    else:
        assert type(got) is type(case["result"]) and got == case["result"], where
