"""Istio's own AuthorizationPolicy cases, run from data tables beside this file.

* ``integration.yaml``: every request of Istio's authz integration test
  (tests/integration/security/authz_test.go) that applies to a sidecar, with the mesh
  the file's header describes; each suite goes through a real PolicyService, the
  ``rbac`` handler and the ``requestcontext`` template.
* ``builder.yaml``: requests derived from Istio's builder testdata
  (pilot/pkg/security/authz/builder/testdata/*-in.yaml with the Envoy RBAC of the
  matching *-out.yaml as the expected behaviour).
* ``proto_examples.yaml``: the examples of istio/api security/v1beta1/authorization_policy.proto.

What does not apply is listed in EXCLUDED.md with the reason.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy.servers.paths import normalize_path
from tests.rbac.conftest import config_text

HERE = Path(__file__).parent
PORTS = {"http": 18080, "http2": 18085, "grpc": 17070, "tcp": 19090}
WORKLOAD_IPS = {"ns1/a": "10.1.0.1", "ns2/a": "10.2.0.1", "ns2/b": "10.2.0.2", "ns1/b": "10.1.0.2", "ns1/c": "10.1.0.3",
                "plaintext": "10.2.0.9"}


def _suites(name: str) -> list[dict[str, Any]]:
    return yaml.safe_load((HERE / name).read_text())["suites"]


def request_attributes(case: dict[str, Any], port_name: str, caller: str, tokens: dict[str, Any],
                       normalization: str) -> dict[str, Any]:
    """The attributes an Istio sidecar's ext_authz CheckRequest would carry for one case."""
    target = case.get("to", "ns1/b")
    namespace, service = target.split("/")
    port = PORTS[port_name]
    attrs: dict[str, Any] = {
        "destination.namespace": namespace,
        "destination.labels": {"app": service, **case.get("labels", {})},
        "destination.ip": ipaddress.ip_address(WORKLOAD_IPS[target]),
        "destination.port": port,
        "source.ip": ipaddress.ip_address(WORKLOAD_IPS[caller]),
        "connection.requested_server_name": f"outbound_.{port}_._.{service}.{namespace}.svc.cluster.local",
    }
    if caller != "plaintext":
        caller_ns, caller_sa = caller.split("/")
        attrs["source.principal"] = f"spiffe://cluster.local/ns/{caller_ns}/sa/{caller_sa}"
    if port_name == "tcp":
        attrs["context.protocol"] = "tcp"
        return attrs
    if port_name == "grpc":
        method, path = "POST", "/proto.EchoTestService/Echo"
    else:
        method, path = case.get("method", "GET"), case.get("path") or "/"
    if normalization != "none":
        path = normalize_path(path, merge_slashes=normalization == "merge-slashes")
    attrs.update({"request.method": method, "request.path": path,
                  "request.host": case.get("host", f"{service}.{namespace}.svc.cluster.local"),
                  "context.protocol": "grpc" if port_name == "grpc" else "http"})
    if case.get("headers"):
        attrs["request.headers"] = dict(case["headers"])
    token = case.get("token")
    if token:
        claims = tokens[token]
        attrs["request.auth.raw_claims"] = json.dumps(claims)
        attrs["request.auth.principal"] = f"{claims['iss']}/{claims['sub']}"
    return attrs


def expand(suite: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """Every (label, attributes, allowed) request of a suite."""
    out = []
    for index, case in enumerate(suite["cases"]):
        callers = case["from"] if isinstance(case["from"], list) else [case["from"]]
        for caller in callers:
            for port_name in case["ports"]:
                label = (f"case {index}: {caller} -> {case.get('to', 'ns1/b')}:{port_name}"
                         f" {case.get('method', '')} {case.get('path', '')} {case.get('token', '')}"
                         f" {case.get('headers', '')}{case.get('host', '')}")
                attrs = request_attributes(case, port_name, caller, suite.get("tokens", {}),
                                           suite.get("normalization", "merge-slashes"))
                out.append((label, attrs, bool(case["allow"])))
    return out


def _suite_config(suite: dict[str, Any]) -> str:
    text = config_text(suite["policies"], suite.get("params", "{}"))
    if suite.get("handlers"):
        # Extra handlers (a CUSTOM provider) go after the rbac handler in the handlers list.
        head, sep, rest = text.partition("instances:")
        extra = "".join("  " + line + "\n" for line in suite["handlers"].splitlines())
        text = head + extra + sep + rest
    return text


async def run_suite(suite: dict[str, Any], policy_config: Any, policy_service_factory: Any) -> None:
    service = await policy_service_factory(policy_config(_suite_config(suite)))
    wrong = []
    for label, attrs, allowed in expand(suite):
        decision = await service.check(attrs)
        if decision.allowed is not allowed:
            wrong.append(f"{label}: expected {'allow' if allowed else 'deny'}, got {decision.message!r}")
    assert not wrong, f"{suite['name']} ({suite['source']}):\n" + "\n".join(wrong)


INTEGRATION = _suites("integration.yaml")


@pytest.mark.parametrize("suite", INTEGRATION, ids=[s["name"] for s in INTEGRATION])
async def test_istio_integration_suite(suite, policy_config, policy_service_factory):
    await run_suite(suite, policy_config, policy_service_factory)


CUSTOM = yaml.safe_load((HERE / "integration.yaml").read_text())["custom_suites"]


@pytest.mark.parametrize("suite", CUSTOM, ids=[s["name"] for s in CUSTOM])
async def test_istio_integration_custom_suite(suite, policy_config, policy_service_factory):
    await run_suite(suite, policy_config, policy_service_factory)


def test_tables_cite_their_sources_and_cover_both_outcomes():
    for suite in INTEGRATION:
        assert suite["source"].startswith("tests/integration/security/authz_test.go")
        outcomes = {allowed for _, _, allowed in expand(suite)}
        assert outcomes == {True, False}, suite["name"]


def builder_attributes(case: dict[str, Any]) -> dict[str, Any]:
    """Attributes for a builder-testdata case (see builder.yaml's header)."""
    attrs: dict[str, Any] = {
        "destination.namespace": case.get("namespace", "foo"),
        "destination.labels": case.get("labels", {"app": "httpbin", "version": "v1"}),
        "destination.port": case.get("port", 8080),
        "source.ip": ipaddress.ip_address(case.get("source_ip", "192.0.2.1")),
    }
    if "principal" in case:
        attrs["source.principal"] = "spiffe://" + case["principal"]
    if case.get("tcp"):
        attrs["context.protocol"] = "tcp"
        return attrs
    attrs.update({"request.method": case.get("method", "GET"), "request.path": case.get("path", "/"),
                  "request.host": case.get("host", "httpbin.foo.svc.cluster.local"), "context.protocol": "http"})
    if case.get("headers"):
        attrs["request.headers"] = dict(case["headers"])
    if "jwt" in case:
        claims = case["jwt"]
        attrs["request.auth.raw_claims"] = json.dumps(claims)
        attrs["request.auth.principal"] = f"{claims['iss']}/{claims['sub']}"
    return attrs


async def run_builder_suite(suite: dict[str, Any], policy_config: Any, policy_service_factory: Any) -> None:
    service = await policy_service_factory(policy_config(config_text(suite["policies"])))
    wrong = []
    for index, case in enumerate(suite["cases"]):
        decision = await service.check(builder_attributes(case))
        if decision.allowed is not case["allow"]:
            wrong.append(f"case {index} {case}: got {decision.message!r}")
        metadata = decision.metadata
        if "audited" in case and bool(metadata.get("access_log_hint")) is not case["audited"]:
            wrong.append(f"case {index} {case}: audit hint {metadata.get('access_log_hint')!r}")
        for action in ("allow", "deny"):
            expected = case.get(f"shadow_{action}")
            got = metadata.get(f"istio_dry_run_{action}_shadow_engine_result")
            if expected is not None and got != expected:
                wrong.append(f"case {index} {case}: shadow {action} result {got!r}, expected {expected!r}")
    assert not wrong, f"{suite['name']} ({suite['source']}):\n" + "\n".join(wrong)


BUILDER = _suites("builder.yaml")


@pytest.mark.parametrize("suite", BUILDER, ids=[s["name"] for s in BUILDER])
async def test_istio_builder_suite(suite, policy_config, policy_service_factory):
    await run_builder_suite(suite, policy_config, policy_service_factory)


PROTO = _suites("proto_examples.yaml")


@pytest.mark.parametrize("suite", PROTO, ids=[s["name"] for s in PROTO])
async def test_proto_example(suite, policy_config, policy_service_factory):
    await run_builder_suite(suite, policy_config, policy_service_factory)


INVALID_PATHS = yaml.safe_load((HERE / "proto_examples.yaml").read_text())["invalid_paths"]


@pytest.mark.parametrize("path", INVALID_PATHS)
def test_proto_invalid_path_templates_are_rejected(path, policy_config, policy_host_factory):
    from policy import ConfigError
    from policy.config import load_config

    policy = ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\n"
              f"spec: {{rules: [{{to: [{{operation: {{paths: ['{path}']}}}}]}}]}}\n")
    with pytest.raises(ConfigError, match="path template"):
        load_config(policy_config(config_text(policy)), policy_host_factory())
