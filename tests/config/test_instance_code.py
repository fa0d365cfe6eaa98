"""Instance builders compiled to one function build what the field walk built: absent → None or left out,
nested groups as dicts, key order kept, other evaluation errors raised, odd field names passed as they were."""

from __future__ import annotations

import pytest

from policy.attributes import AttributeBag, ValueType
from policy.config.instance_code import compile_builder
from policy.config.snapshot import InstanceBuilder
from policy.expr import EvaluationError, compile_expression
from policy.sdk import Template, ValueMap, Variety

VOCABULARY = {"a": ValueType.STRING, "n": ValueType.INT64, "m": ValueType.STRING_MAP}


def expr(text):
    return compile_expression(text, VOCABULARY)


def record(**fields):
    return fields


SPEC = {
    "value": ValueType.STRING,
    "missing": ValueType.STRING,
    "dimensions": ValueMap(),
    "group": {"inner": ValueType.INT64, "props": ValueMap(), "deeper": {"x": ValueType.STRING}},
    "odd-name": ValueType.STRING,
    "class": ValueType.STRING,
}


def compiled_fields():
    return {
        "value": expr("a"),
        "missing": expr("m['nope']"),  # a map key that is absent reads "" (Mixer): kept
        "dimensions": {"z": expr("a"), "absent": expr("n"), "b": expr("m['k'] | \"d\"")},
        "group": {"inner": expr("n | 7"), "props": {"p": expr("a")}, "deeper": {"x": expr("a + \"!\"")}},
        "odd-name": expr("\"o\""),
        "class": expr("n"),
    }


def test_builds_every_kind_of_field_in_order():
    build = compile_builder("inst", SPEC, compiled_fields(), record)
    out = build(AttributeBag({"a": "A", "m": {"k": "K"}}))
    assert out == {
        "name": "inst", "value": "A", "missing": "",
        "dimensions": {"z": "A", "b": "K"},  # the absent "n" is left out of the map
        "group": {"inner": 7, "props": {"p": "A"}, "deeper": {"x": "A!"}},
        "odd-name": "o", "class": None,  # an absent scalar is None
    }
    assert list(out) == ["name", "value", "missing", "dimensions", "group", "odd-name", "class"]
    assert list(out["dimensions"]) == ["z", "b"]


def test_an_absent_map_and_attribute_everywhere():
    out = compile_builder("inst", SPEC, compiled_fields(), record)(AttributeBag({}))
    assert out["value"] is None and out["missing"] is None and out["dimensions"] == {"b": "d"}
    assert out["group"] == {"inner": 7, "props": {}, "deeper": {"x": None}}


def test_evaluation_errors_other_than_absence_propagate():
    spec = {"value": ValueType.INT64, "dimensions": ValueMap()}
    failing = {"value": expr("n"), "dimensions": {"d": compile_expression("m['k'] == \"x\"", VOCABULARY)}}
    build = compile_builder("inst", spec, failing, record)
    assert build(AttributeBag({"n": 1, "m": {"k": "x"}})) == {"name": "inst", "value": 1, "dimensions": {"d": True}}

    def broken(bag):
        raise EvaluationError("expr", "boom")

    class Broken:
        evaluate = staticmethod(broken)

    with pytest.raises(EvaluationError):
        compile_builder("inst", spec, {"value": Broken(), "dimensions": {}}, record)(AttributeBag({}))
    with pytest.raises(EvaluationError):
        compile_builder("inst", spec, {"value": expr("n"), "dimensions": {"d": Broken()}}, record)(AttributeBag({}))


def test_a_field_called_name_fails_as_the_walk_did():
    build = compile_builder("inst", {"name": ValueType.STRING}, {"name": expr("a")}, record)
    with pytest.raises(TypeError):
        build(AttributeBag({"a": "x"}))


def test_instance_builder_recompiles_replaced_fields():
    template = Template("t", Variety.REPORT, {"value": ValueType.STRING}, record)
    builder = InstanceBuilder("i", template, {"value": expr("a")})
    assert builder.build(AttributeBag({"a": "1"})) == {"name": "i", "value": "1"}
    builder.fields = {"value": expr("a + \"2\"")}
    assert builder.build(AttributeBag({"a": "1"})) == {"name": "i", "value": "12"}
