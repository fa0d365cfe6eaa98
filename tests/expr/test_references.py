"""What an expression reads: statically (``referenced``) and at run time (RecordingBag reads)."""

from __future__ import annotations

import pytest

from policy.attributes import AttributeBag, Presence, RecordingBag, references
from policy.expr import compile_expression


@pytest.mark.parametrize(
    ("text", "referenced"),
    [
        ("1 == 1", set()),
        ('ip("1.2.3.4")', set()),
        ("request.size", {("request.size", None)}),
        ('request.headers["x-user"]', {("request.headers", "x-user")}),
        ('request.headers["a"] == request.headers["b"]',
         {("request.headers", "a"), ("request.headers", "b")}),
        ("request.headers[request.path]", {("request.headers", None), ("request.path", None)}),
        ("size(request.headers)", {("request.headers", None)}),
        ('(request.headers | source.labels)["k"]',
         {("request.headers", None), ("source.labels", None)}),
        ('source.namespace == "default" && request.headers["x-user"] == "alice"',
         {("source.namespace", None), ("request.headers", "x-user")}),
        ('request.auth.principal | source.principal | "nobody"',
         {("request.auth.principal", None), ("source.principal", None)}),
        ('request.path.startsWith("/a")', {("request.path", None)}),
    ],
)
def test_referenced(vocabulary, text, referenced):
    compiled = compile_expression(text, vocabulary)
    assert compiled.referenced == referenced
    assert isinstance(compiled.referenced, frozenset)
    assert compiled.is_constant is (not referenced)


def test_reads_are_recorded_per_map_key(evaluate):
    result, reads = evaluate(
        'source.namespace == "default" && request.headers["x-user"] == "alice"',
        {"source.namespace": "default", "request.headers": {"x-user": "alice", "x-id": "1"}},
    )
    assert result is True
    assert reads == [("source.namespace", None), ("request.headers", "x-user")]


def test_reads_of_absent_attributes_are_recorded(evaluate):
    result, reads = evaluate('request.headers["x-user"] | source.labels["app"] | "none"')
    assert result == "none"
    assert reads == [("request.headers", "x-user"), ("source.labels", "app")]


def test_computed_key_is_recorded_with_its_value(evaluate):
    result, reads = evaluate("request.headers[request.path]",
                             {"request.path": "x-a", "request.headers": {"x-a": "v"}})
    assert result == "v"
    assert reads == [("request.path", None), ("request.headers", "x-a")]


def test_reads_feed_the_reference_report(vocabulary):
    bag = AttributeBag({"request.headers": {"x-user": "alice"}})
    recording = RecordingBag(bag)
    compiled = compile_expression(
        'request.headers["x-user"] == "alice" && (source.principal | "") == ""', vocabulary)
    assert compiled.evaluate(recording) is True
    got = {(r.name, r.map_key, r.presence) for r in references(bag, recording.reads)}
    assert got == {("request.headers", "x-user", Presence.EXACT),
                   ("source.principal", None, Presence.ABSENT)}


def test_evaluate_uses_only_get_lookup_and_get_key(vocabulary):
    class Minimal:
        """A bag with nothing but the three methods the contract allows."""

        def __init__(self):
            self.calls = []

        def get(self, name):
            self.calls.append(("get", name))
            return {"request.size": 3, "source.labels": {"app": "a"}}.get(name)

        def get_key(self, name, key):
            self.calls.append(("get_key", name, key))
            return {"app": "a"}.get(key) if name == "source.labels" else None

        def lookup(self, name, key):
            self.calls.append(("lookup", name, key))
            return {"app": "a"}.get(key, "") if name == "source.labels" else None

    bag = Minimal()
    compiled = compile_expression('request.size > 1 && source.labels["app"] == "a" && '
                                  '(source.labels["x"] | "y") == "y"', vocabulary)
    assert compiled.evaluate(bag) is True
    assert bag.calls == [("get", "request.size"), ("lookup", "source.labels", "app"),
                         ("get_key", "source.labels", "x")]
