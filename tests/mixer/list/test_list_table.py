"""Runner of cases.yaml: Mixer's list adapter tests (list_test.go, list_integration_test.go) as data."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.listchecker import ListChecker
from policy import AdapterError, BuildContext, Clock, Code, ListEntry, ParamsError, parse_params

TABLE = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text())


def _id(case: dict[str, Any]) -> str:
    return f"{case['source']}::{case['test']}"


async def _check_all(handler: Any, checks: list[dict[str, Any]]) -> None:
    for check in checks:
        value = ipaddress.ip_address(check["ip"]) if "ip" in check else check["value"]
        result = handler.check(ListEntry("entry", value))
        if hasattr(result, "__await__"):
            result = await result
        assert result.status.code is Code[check["code"]], (check, result.status)
        if "message" in check:
            assert result.status.message == check["message"], check
        assert result.valid_duration == 300.0 and result.valid_use_count == 10000  # Mixer's defaults


@pytest.mark.parametrize("case", TABLE["handlers"], ids=_id)
async def test_list_handler_case(case: dict[str, Any], tmp_path: Path) -> None:
    raw = dict(case["params"])
    source = tmp_path / "list.txt"
    if "provider" in case:
        source.write_text(case["provider"])
        raw["providerUrl"] = source.as_uri()
    params = parse_params(ListChecker.Params, raw)
    assert list(ListChecker.validate(params)) == []
    handler = ListChecker.build(params, BuildContext(handler="h", config_dir=tmp_path, clock=Clock()))
    try:
        if case.get("unavailable"):
            with pytest.raises(AdapterError) as info:
                await handler.check(ListEntry("entry", "ABC"))
            assert info.value.code is Code.UNAVAILABLE
            return
        await _check_all(handler, case.get("checks", []))
        for step in case.get("then", []):
            source.write_text(step["provider"])
            assert await handler.refresh() is step["refreshed"]
            await _check_all(handler, step["checks"])
    finally:
        closed = handler.close() if hasattr(handler, "close") else None
        if closed is not None and hasattr(closed, "__await__"):
            await closed


@pytest.mark.parametrize("case", TABLE["validate"], ids=_id)
def test_list_validate_case(case: dict[str, Any]) -> None:
    try:
        params = parse_params(ListChecker.Params, case["params"])
    except ParamsError as exc:  # a negative duration is refused already when params are read
        fields = [e.field for e in exc.errors]
    else:
        fields = [e.field for e in ListChecker.validate(params)]
    assert fields == ([case["field"]] if case["field"] else []), fields
