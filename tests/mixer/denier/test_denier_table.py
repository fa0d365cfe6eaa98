"""Runner of cases.yaml: Mixer's denier tests (denier_test.go) as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.denier import Denier
from policy import BuildContext, Code, ListEntry, Quota, QuotaArgs, parse_params

TABLE = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text())


@pytest.mark.parametrize("case", TABLE["cases"], ids=lambda c: f"{c['source']}::{c['test']}")
def test_denier_case(case: dict[str, Any], tmp_path: Path) -> None:
    if "templates" in case:
        assert set(case["templates"]) <= set(Denier.templates)
        return
    params = parse_params(Denier.Params, case["params"])
    assert list(Denier.validate(params)) == []
    handler = Denier.build(params, BuildContext(handler="h", config_dir=tmp_path))
    want = case["want"]
    if case["call"] == "quota":
        result = handler.quota(Quota("q", {}), QuotaArgs("q", case["amount"]))
        assert result.granted_amount == want["granted"]
        assert result.valid_duration == want["validDuration"]
        assert not result.ok  # nothing granted: the request is not let through for this quota
        return
    result = handler.check(ListEntry("v", case["value"]) if "value" in case else None)
    assert result.status.code is Code[want["code"]]
    assert result.status.message == want.get("message", "")
    assert result.valid_duration == want["validDuration"] and result.valid_use_count == want["validUseCount"]
