"""OPA-Envoy's decision-object tests (envoyauth/response_test.go), run from response_cases.yaml."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

_decision = importlib.import_module("adapters.opa._decision")

CASES = yaml.safe_load((Path(__file__).parent / "envoy_plugin" / "response_cases.yaml").read_text())

GETTERS = {
    "is_allowed": _decision.is_allowed,
    "query_parameters_to_remove": lambda d: _decision.string_list(d, "query_parameters_to_remove"),
    "request_headers_to_remove": lambda d: _decision.string_list(d, "request_headers_to_remove"),
    "query_parameters_to_set": lambda d: sorted(map(list, _decision.query_parameters_to_set(d))),
    "response_headers_to_add": lambda d: sorted(map(list, _decision.header_pairs(d, "response_headers_to_add"))),
    "headers": lambda d: sorted(map(list, _decision.header_pairs(d, "headers"))),
    "body": _decision.response_body,
    "http_status": _decision.http_status,
    "dynamic_metadata": _decision.dynamic_metadata,
}


@pytest.mark.parametrize("case", CASES, ids=[c["source"] for c in CASES])
def test_response_case(case: dict[str, Any]) -> None:
    getter = GETTERS[case["getter"]]
    if "error" in case:
        with pytest.raises(_decision.DecisionError) as caught:
            getter(case["decision"])
        assert case["error"] in str(caught.value)
    else:
        assert getter(case["decision"]) == case["want"]
