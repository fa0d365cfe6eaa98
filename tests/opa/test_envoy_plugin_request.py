"""OPA-Envoy's input-document tests (envoyauth/request_test.go), run from request_cases.yaml
through the ext_authz translation, the requestcontext instance and the opa adapter's input builder.

Each case also checks ``input.attributes`` against protobuf's JSON mapping of the request, as
the peer's ``RequestToInput`` builds it (the whole document: no policy bounds the reach here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import json_format

from adapters.opa._input import InputError, build_input
from policy.config import load_config
from policy.servers.ext_authz import request_bag
from tests.opa.conftest import inline, opa_config

CASES = yaml.safe_load((Path(__file__).parent / "envoy_plugin" / "request_cases.yaml").read_text())


@pytest.fixture(scope="module")
def instance_builder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from policy.runtime.plugins import build_plugin_host

    directory = tmp_path_factory.mktemp("config")
    (directory / "policy.yaml").write_text(opa_config(inline("package envoy.authz\ndefault allow := true")))
    snapshot = load_config(directory, build_plugin_host(autoload=False))
    return snapshot.instances["request"]


@pytest.mark.parametrize("case", CASES, ids=[c["source"] for c in CASES])
def test_request_case(case: dict[str, Any], instance_builder: Any) -> None:
    request = json_format.ParseDict(case["request"], external_auth_pb2.CheckRequest())
    instance = instance_builder.build(request_bag(request))
    if "error" in case:
        with pytest.raises(InputError, match=case["error"]):
            build_input(instance)
        return
    document = build_input(instance)
    for member, want in case["want"].items():
        assert document.get(member) == want, member
    # RequestToInput's input.attributes: the request's attributes as protojson writes them
    # (the protocol as sent, source.service and certificate when set, unset fields absent).
    assert document["attributes"] == json_format.MessageToDict(request).get("attributes", {})
    assert document["version"] == {"ext_authz": "v3", "encoding": "protojson"}
