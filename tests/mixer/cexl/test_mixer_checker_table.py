"""Mixer's type-checker table (checker_test.go TestTypeCheck), run against our checker.

``checker_cases.json`` lists the cases by their index in the Go table; the Mixer error
text ("typeError", "failed to parse") is kept for reference, and we require a compile
error. EMAIL_ADDRESS, URI and DNS_NAME attributes are declared with the checker's kind,
as in the CEXL table (README, Mixer section).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy.attributes import ValueType
from policy.expr import ExpressionError
from policy.expr.checker import Checker, Kind
from policy.expr.grammar import parse

TABLE = json.loads((Path(__file__).parent / "checker_cases.json").read_text())
VOCABULARY = {name: ValueType.__members__.get(t) or Kind[t]
              for name, t in TABLE["attributes"].items()}


@pytest.mark.parametrize("case", TABLE["cases"], ids=lambda c: f"{c['index']}:{c['expression']}")
def test_mixer_type_check(case: dict) -> None:
    text = case["expression"]
    if "error" in case:
        with pytest.raises(ExpressionError):
            Checker(text, VOCABULARY).check(parse(text))
        return
    assert Checker(text, VOCABULARY).check(parse(text)).kind.name == case["type"], TABLE["source"]
