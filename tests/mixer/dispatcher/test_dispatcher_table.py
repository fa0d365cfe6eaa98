"""Runner of cases.yaml: Mixer's TestDispatcher table (dispatcher_test.go) as data, through our Dispatcher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from policy.attributes import AttributeBag
from policy.config import load_config
from policy.runtime.dispatch import Dispatcher
from policy.runtime.plugins import build_plugin_host
from policy.sdk import Code, QuotaArgs
from tests.mixer.dispatcher import scripted

TABLE = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text())
API = "apiVersion: config.istio.io/v1alpha2"


def _documents(case: dict[str, Any]) -> str:
    docs = [TABLE["common"]]
    for name, params in case["handlers"].items():
        docs.append(yaml.safe_dump({"apiVersion": "config.istio.io/v1alpha2", "kind": "scripted",
                                    "metadata": {"name": name, "namespace": "istio-system"}, "spec": params}))
    for index, rule in enumerate(case["rules"]):
        docs.append(yaml.safe_dump({"apiVersion": "config.istio.io/v1alpha2", "kind": "rule",
                                    "metadata": {"name": f"r{index}", "namespace": "istio-system"},
                                    "spec": rule}))
    return "\n---\n".join(docs)


def _ours(message: str, case: dict[str, Any]) -> str:
    """Mixer writes ``handler:message``; we write ``handler: message`` (README: Mixer differences)."""
    for name in case["handlers"]:
        message = message.replace(f"{name}.scripted.istio-system:", f"{name}.scripted.istio-system: ")
    return message


@pytest.mark.parametrize("case", TABLE["cases"], ids=lambda c: f"dispatcher_test.go::TestDispatcher/{c['test']}")
async def test_dispatcher_case(case: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(_documents(case))
    snapshot = load_config(path, build_plugin_host(autoload=False, extra_plugins=[scripted]))
    await snapshot.start()
    try:
        dispatcher = Dispatcher(snapshot)
        bag = AttributeBag(case.get("attrs", {}))
        if "quota" in case:
            ask = case["quota"]
            decision = await dispatcher.check(bag, {ask["name"]: QuotaArgs(ask["name"], ask["amount"],
                                                                           ask["best_effort"], ask["dedup"])})
            result, want = decision.quotas[ask["name"]], case["want_quota"]
            assert result.status.code is Code[want["code"]], result
            assert result.granted_amount == want["granted"], result
            assert result.valid_duration == pytest.approx(want["validDuration"]), result
            if "message" in want:
                assert result.status.message == _ours(want["message"], case)
            return
        decision = await dispatcher.check(bag)
        want = case["check"]
        assert decision.status.code is Code[want["code"]], decision.status
        if "message" in want:
            assert decision.status.message == _ours(want["message"], case)
        assert decision.valid_duration == pytest.approx(want["validDuration"])
        if "validUseCount" in want:
            assert decision.valid_use_count == want["validUseCount"]
        for key in ("httpStatus", "body"):
            if key in want:
                assert getattr(decision, {"httpStatus": "http_status", "body": "body"}[key]) == want[key]
        for key in ("response_headers", "request_headers"):
            if key in want:
                assert [[h.name, h.value] for h in getattr(decision, key)] == want[key]
    finally:
        await snapshot.close()
