"""Shared fixtures for the expression tests: the standard vocabulary and an evaluator."""

from __future__ import annotations

from typing import Any

import pytest

from policy.attributes import AttributeBag, RecordingBag, ValueType, standard_vocabulary
from policy.expr import compile_expression


@pytest.fixture(scope="session")
def vocabulary():
    """Istio's standard vocabulary plus a few attributes of the rarer types."""
    return standard_vocabulary([{"test.bytes": ValueType.BYTES, "test.double": ValueType.DOUBLE,
                                 "test.any": ValueType.ANY, "test.other_map": ValueType.STRING_MAP}])


@pytest.fixture
def evaluate(vocabulary):
    """Compile ``text`` and evaluate it against ``values``; return (result, recorded reads)."""

    def run(text: str, values: dict[str, Any] | None = None, **kwargs) -> tuple[Any, list]:
        compiled = compile_expression(text, vocabulary, **kwargs)
        bag = RecordingBag(AttributeBag(values or {}))
        return compiled.evaluate(bag), bag.reads

    return run


@pytest.fixture
def value(evaluate):
    """Like ``evaluate`` but only the result."""
    return lambda text, values=None, **kwargs: evaluate(text, values, **kwargs)[0]
