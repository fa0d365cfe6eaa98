"""examples/observability stays valid: it parses, and its report rules take decision records only."""

from __future__ import annotations

from pathlib import Path

from policy.config import parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_observability_example_validates(policy_host_factory):
    model = parse_config(ROOT / "examples" / "observability", policy_host_factory())
    assert not model.warnings
    assert {h.adapter.name for h in model.handlers.values()} >= {"prometheus", "dogstatsd", "stdio"}
    rules = {r.display: r for r in model.rules}
    assert rules["decision-log"].match == 'context.reporter.kind == "decision"'
