"""Instance builders compiled to one function build what the field walk built: absent → None or left out,
nested groups as dicts, key order kept, other evaluation errors raised, odd field names passed as they were."""

from __future__ import annotations

from collections.abc import Mapping

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


def _sdk_cases():
    """Every built-in template whose factory is an SDK class, with all, some and none of its fields given."""
    from policy.sdk.templates import BUILTIN_TEMPLATES

    vocabulary = {**VOCABULARY, "t": ValueType.TIMESTAMP, "z": ValueType.STRING}
    values = {ValueType.STRING: "a", ValueType.ANY: "n", ValueType.TIMESTAMP: "t"}
    for template in BUILTIN_TEMPLATES:
        fields = {key: ({"k": compile_expression("a", vocabulary), "gone": compile_expression("z", vocabulary)}
                        if isinstance(kind, ValueMap) else compile_expression(values[kind], vocabulary))
                  for key, kind in template.fields.items() if not isinstance(kind, Mapping)}
        for subset in (fields, dict(list(fields.items())[:1]), {}):
            yield pytest.param(template, subset, id=f"{template.name}-{len(subset)}")


@pytest.mark.parametrize(("template", "fields"), list(_sdk_cases()))
def test_an_sdk_instance_made_directly_equals_the_one_its_class_makes(template, fields):
    import datetime

    bag = AttributeBag({"a": "A", "n": 3, "t": datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)})
    direct = compile_builder("inst", template.fields, fields, template.factory)(bag)
    by_keywords = compile_builder("inst", template.fields, fields, lambda **kw: template.factory(**kw))(bag)
    assert type(direct) is type(by_keywords) and direct == by_keywords
    assert direct == template.factory(name="inst", **{k: getattr(by_keywords, k) for k in fields})
    build = compile_builder("inst", template.fields, fields, template.factory)
    made_directly = any(value is object.__new__ for value in build.__globals__.values())
    assert made_directly == isinstance(template.factory, type)  # every SDK class; not _authorization's function
    first, second = build(bag), build(bag)
    for name, value in ((f, getattr(first, f)) for f in template.fields if hasattr(first, f)):
        if isinstance(value, dict):  # a map (given or a default) is a new dict in each instance, never shared
            assert getattr(second, name) == value and getattr(second, name) is not value


def test_a_field_the_sdk_class_does_not_have_fails_as_its_constructor_does():
    from policy.sdk.templates import Metric

    build = compile_builder("inst", {"value": ValueType.STRING, "extra": ValueType.STRING},
                            {"value": expr("a"), "extra": expr("a")}, Metric)
    with pytest.raises(TypeError):
        build(AttributeBag({"a": "x"}))
