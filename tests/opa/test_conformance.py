"""The embedded engine against OPA's own conformance suite: no family passes fewer cases than
recorded in adapters/opa/_conformance_record.py (the figures docs/adapters/opa.md publishes)."""

from __future__ import annotations

import importlib

from tools import opa_conformance

RECORDED = importlib.import_module("adapters.opa._conformance_record")


def test_the_vendored_suite_is_the_recorded_one():
    cases = opa_conformance.load_cases()
    assert len(cases) == sum(counts[0] for counts in RECORDED.FAMILIES.values()) > 2000
    assert {c["family"] for c in cases} == set(RECORDED.FAMILIES)
    assert all(c["source"].startswith(c["family"] + "/") for c in cases)


def test_no_family_falls_below_its_recorded_pass_count():
    summary = opa_conformance.run()  # a newer engine may pass more (then rerun the tool with --record), never less
    worse = {name: (f["pass"], RECORDED.FAMILIES[name][1]) for name, f in summary["families"].items()
             if f["pass"] < RECORDED.FAMILIES[name][1]}
    assert not worse, f"families passing fewer cases than recorded (now, recorded): {worse}"
    recorded_pass = sum(counts[1] for counts in RECORDED.FAMILIES.values())
    assert summary["total"]["pass"] >= recorded_pass
    assert summary["pass_rate"] >= 0.85


def test_a_wrong_answer_is_counted_as_a_failure():
    case = {"family": "x", "source": "x/y.json", "note": "x/y", "query": "data.t.p = x",
            "modules": ["package t\np := 1\n"], "want_result": [{"x": 2}]}
    assert opa_conformance.evaluate(case)[0] == "fail"
    assert opa_conformance.evaluate({**case, "want_result": [{"x": 1}]})[0] == "pass"
    refused = {**case, "modules": ['package t\np := x if x := net.cidr_contains("10.0.0.0/8", "10.1.1.1")\n']}
    assert opa_conformance.evaluate(refused)[0] == "refused"
