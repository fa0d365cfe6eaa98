"""Runner of cases.yaml: Mixer's memquota tests (memquota_test.go, rollingWindow_test.go) as data."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.memquota import MemQuotaAdapter
from policy import BuildContext, ParamsError, Quota, QuotaArgs, parse_params
from policy.testing import FakeClock

TABLE = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text())


def _id(case: dict[str, Any]) -> str:
    return f"{case['source']}::{case['test']}"


@pytest.mark.parametrize("case", TABLE["cases"], ids=_id)
def test_memquota_case(case: dict[str, Any], tmp_path: Path) -> None:
    clock = FakeClock()
    start = clock.wall
    params = parse_params(MemQuotaAdapter.Params, case["params"])
    assert list(MemQuotaAdapter.validate(params)) == []
    handler = MemQuotaAdapter.build(params, BuildContext(handler="h", config_dir=tmp_path, clock=clock.clock))
    dims: dict[str, Any] = dict(case.get("dims", {}))
    dims.update({k: ipaddress.ip_address(v) for k, v in case.get("ip_dims", {}).items()})
    dedup_period = params.min_deduplication_duration.total_seconds()
    for index, step in enumerate(case["steps"]):
        if step.get("reap"):
            clock.advance(dedup_period)
            continue
        if "at" in step:
            target = start + step["at"]
            assert target >= clock.wall, f"step {index}: time goes back"
            clock.advance(target - clock.wall)
        name, amount, best_effort, dedup = step["ask"]
        result = handler.quota(Quota(name, dims), QuotaArgs(name, amount, best_effort, dedup))
        want = step["want"]
        where = f"step {index} {step}: got {result}"
        assert result.granted_amount == want["granted"], where
        if "valid" in want:
            assert result.valid_duration == pytest.approx(want["valid"]), where
        if "remaining" in want:
            assert result.remaining == want["remaining"], where
        if want["granted"] == 0 and amount > 0:
            assert not result.ok and result.valid_duration == 0.0, where


@pytest.mark.parametrize("case", TABLE["validate"], ids=_id)
def test_memquota_validate_case(case: dict[str, Any]) -> None:
    try:
        params = parse_params(MemQuotaAdapter.Params, case["params"])
    except ParamsError as exc:  # a negative duration is refused already when params are read
        fields = [e.field for e in exc.errors]
    else:
        fields = [e.field for e in MemQuotaAdapter.validate(params)]
        fields += [e.field for e in MemQuotaAdapter.validate_instances(params, case["routed"])]
    assert fields == case["fields"]
