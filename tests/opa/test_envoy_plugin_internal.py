"""OPA-Envoy's server tests (internal/internal_test.go), run from internal_cases.yaml through our
real ext_authz server over a socket, with Envoy's generated stub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import uuid

import grpc

import pytest
import yaml
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import json_format

from policy import Code, ConfigError
from policy.config import load_config
from tests.envoy.conftest import authz
from tests.opa.conftest import inline, opa_config

TABLE = yaml.safe_load((Path(__file__).parent / "envoy_plugin" / "internal_cases.yaml").read_text())
CASES = TABLE["cases"]


def _config(case: dict[str, Any]) -> str:
    params = inline(TABLE["modules"][case["module"]]) + f"\ndecision: {case['decision']}\nregoVersion: v1"
    for option in ("dryRun", "skipRequestBodyParse"):
        if case.get(option):
            params += f"\n{option}: true"
    return opa_config(params)


def _pairs(options: Any) -> list[list[str]]:
    return sorted([o.header.key, o.header.value] for o in options)


def _check(response: Any, want: dict[str, Any]) -> None:
    expected_code = {"OK": Code.OK, "PERMISSION_DENIED": Code.PERMISSION_DENIED}[want["status"]]
    assert response.status.code == expected_code, response
    ok, denied = response.ok_response, response.denied_response
    checks = {
        "http_status": lambda: denied.status.code,
        "body": lambda: denied.body,
        "headers": lambda: _pairs(ok.headers if want["status"] == "OK" else denied.headers),
        "headers_to_remove": lambda: sorted(ok.headers_to_remove),
        "response_headers_to_add": lambda: _pairs(ok.response_headers_to_add),
        "query_parameters_to_set": lambda: sorted([p.key, p.value] for p in ok.query_parameters_to_set),
        "query_parameters_to_remove": lambda: sorted(ok.query_parameters_to_remove),
    }
    for member, got in checks.items():
        if member in want:
            assert got() == want[member], member
    metadata = json_format.MessageToDict(response.dynamic_metadata)
    decision_id = metadata.pop("decision_id", "")
    if want.get("decision_id"):  # assertDynamicMetadataDecisionID: a 36-character UUID
        assert len(decision_id) == 36 and uuid.UUID(decision_id).version == 4
    if "dynamic_metadata" in want:
        assert metadata == want["dynamic_metadata"]


@pytest.mark.parametrize("case", CASES, ids=[c["source"] for c in CASES])
async def test_internal_case(case: dict[str, Any], policy_config: Any, policy_server_factory: Any,
                             policy_host_factory: Any) -> None:
    config = policy_config(_config(case))
    want = case["want"]
    if "load_error" in want:
        with pytest.raises(ConfigError, match=want["load_error"]):
            load_config(config, policy_host_factory())
        return
    running = await policy_server_factory(config)
    request = json_format.ParseDict(TABLE["requests"][case["request"]], external_auth_pb2.CheckRequest())
    stub = authz(running, "unix")
    if "grpc_error" in want:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Check(request)
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert want["grpc_error"] in caught.value.details()
        return
    _check(await stub.Check(request), want)
