"""Mixer's parser and type-checker tables, run against ours.

``checker_cases.json`` holds, by their index in the Go tables:
``checker`` (lang/checker/checker_test.go TestTypeCheck), ``internal_type_check``
(lang/ast/expr_test.go TestInternalTypeCheck), ``bad_parse`` and ``good_parse``
(lang/ast/expr_test.go TestBadParse / TestGoodParse). Mixer's error texts are kept for
reference; we require a compile error. EMAIL_ADDRESS, URI and DNS_NAME attributes are
declared with the checker's kind, as in the CEXL table (README, Mixer section).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy.attributes import ValueType
from policy.expr import ExpressionError
from policy.expr.checker import Checker, Kind
from policy.expr.grammar import parse
from policy.expr.nodes import Select, walk

TABLES = json.loads((Path(__file__).parent / "checker_cases.json").read_text())

#: (table, index) → reason; kept in step with EXCLUDED.md.
DIFFERENT = {
    ("bad_parse", 8): "single-quoted strings are accepted (from Mixer's CEL mode)",
    ("good_parse", 12): "a/b: '/' is a syntax error here; Mixer parses it and fails type-checking "
                        "(unknown function: QUO)",
}


def _vocabulary(types: dict[str, str]) -> dict:
    return {name: ValueType.__members__.get(t) or Kind[t] for name, t in types.items()}


def _cases(table: str):
    return [pytest.param(c, id=f"{c['index']}:{c['expression']}") for c in TABLES[table]["cases"]]


@pytest.mark.parametrize("case", _cases("checker"))
def test_mixer_type_check(case: dict) -> None:
    vocabulary = _vocabulary(TABLES["checker"]["attributes"])
    text = case["expression"]
    if "error" in case:
        with pytest.raises(ExpressionError):
            Checker(text, vocabulary).check(parse(text))
        return
    assert Checker(text, vocabulary).check(parse(text)).kind.name == case["type"]


@pytest.mark.parametrize("case", _cases("internal_type_check"))
def test_mixer_internal_type_check(case: dict) -> None:
    vocabulary = _vocabulary(case["attributes"])
    text = case["expression"]
    if "error" in case:
        with pytest.raises(ExpressionError):
            Checker(text, vocabulary).check(parse(text))
        return
    assert Checker(text, vocabulary).check(parse(text)).kind.name == case["type"]


@pytest.mark.parametrize("case", _cases("bad_parse"))
def test_mixer_bad_parse(case: dict) -> None:
    if ("bad_parse", case["index"]) in DIFFERENT:
        parse(case["expression"])  # accepted on purpose
        return
    try:
        tree = parse(case["expression"])
    except ExpressionError:
        return
    # `a().b`: our grammar reads the field selection and the checker refuses every one
    # ("cannot select '.b' here"), whatever the vocabulary.
    assert any(isinstance(n, Select) for n in walk(tree)), case["expression"]
    with pytest.raises(ExpressionError, match="cannot select"):
        Checker(case["expression"], {}).check(tree)


@pytest.mark.parametrize("case", _cases("good_parse"))
def test_mixer_good_parse(case: dict) -> None:
    if ("good_parse", case["index"]) in DIFFERENT:
        with pytest.raises(ExpressionError):
            parse(case["expression"])
        return
    parse(case["expression"])


def test_differences_are_listed() -> None:
    listed = (Path(__file__).parent / "EXCLUDED.md").read_text()
    for table, index in DIFFERENT:
        assert f"| {table} {index} |" in listed
