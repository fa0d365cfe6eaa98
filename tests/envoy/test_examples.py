"""The Envoy and Istio deployment examples: they parse as Envoy/Kubernetes would, refer to each other
consistently, and what they configure works against a real server."""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import descriptor_pool, json_format

from policy.config import parse_config
from policy.runtime.plugins import build_plugin_host
from tests.envoy.conftest import authz, check_request, headers_of

ROOT = Path(__file__).resolve().parents[2]
ENVOY = ROOT / "examples" / "envoy"
ISTIO = ROOT / "examples" / "istio"


def _walk(value: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a YAML tree."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                found.append(v)
            found.extend(_walk(v, key))
    elif isinstance(value, list):
        for item in value:
            found.extend(_walk(item, key))
    return found


def _import_type(type_url: str) -> None:
    """Import the xds-protos module defining ``type_url``'s message; fail naming it when none does."""
    full_name = type_url.rsplit("/", 1)[-1]
    package = full_name.rsplit(".", 1)[0]
    try:
        module = importlib.import_module(package)
    except ImportError:
        pytest.fail(f"@type {type_url}: no package {package} in xds-protos")
    for info in pkgutil.iter_modules(module.__path__):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")
    try:
        descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        pytest.fail(f"@type {type_url}: package {package} has no message {full_name.rsplit('.', 1)[-1]}")


def bootstraps() -> list[Path]:
    files = [p for p in sorted(ENVOY.rglob("*.yaml"))
             if any("static_resources" in (doc or {}) for doc in yaml.safe_load_all(p.read_text()))]
    assert files, "examples/envoy has no bootstrap"
    return files


@pytest.mark.parametrize("path", bootstraps(), ids=lambda p: p.name)
def test_envoy_bootstrap_loads_into_envoys_bootstrap_message(path):
    data = yaml.safe_load(path.read_text())
    types = _walk(data, "@type")
    assert len(types) >= 10
    for type_url in types:
        _import_type(type_url)
    bootstrap = json_format.ParseDict(data, bootstrap_pb2.Bootstrap())  # unknown fields and bad values fail
    clusters = {c.name: c for c in bootstrap.static_resources.clusters}
    referenced = {g["cluster_name"] for g in _walk(data, "envoy_grpc")}
    assert referenced == {"policy_uds", "policy_tcp"} and referenced <= set(clusters)
    endpoint = lambda name: clusters[name].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address  # noqa: E731
    assert endpoint("policy_uds").pipe.path == "/var/run/policy/policy.sock"
    assert endpoint("policy_tcp").socket_address.port_value == 9191
    for name in referenced:  # gRPC needs HTTP/2 to the policy clusters
        options = clusters[name].typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        assert "explicit_http_config" in json_format.MessageToDict(options, preserving_proto_field_name=True)
    readme = (ENVOY / "README.md").read_text()
    assert "--listen unix:/var/run/policy/policy.sock --listen 127.0.0.1:9191" in readme


def test_a_typo_in_a_bootstrap_fails():
    data = yaml.safe_load((ENVOY / "envoy.yaml").read_text())
    text = json.dumps(data).replace("failure_mode_allow", "failure_mode_alow")
    for type_url in _walk(data, "@type"):
        _import_type(type_url)
    with pytest.raises(json_format.ParseError, match="failure_mode_alow"):
        json_format.ParseDict(json.loads(text), bootstrap_pb2.Bootstrap())
    bad = json.dumps(data).replace("ext_authz.v3.ExtAuthz\"", "ext_authz.v3.ExtAuth\"", 1)
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict(json.loads(bad), bootstrap_pb2.Bootstrap())


def test_envoy_example_policy_validates_without_warnings():
    model = parse_config(ENVOY / "policy", build_plugin_host(autoload=False))
    assert model.warnings == []
    assert [b.quota for b in model.quota_bindings] == ["requestcount"]


async def test_envoy_example_policy_answers_what_this_envoy_asks(policy_server_factory):
    running = await policy_server_factory(ENVOY / "policy")
    jwt_namespace = yaml.safe_load((ENVOY / "envoy.yaml").read_text())
    assert "envoy.filters.http.jwt_authn" in _walk(jwt_namespace, "metadata_context_namespaces")[0]
    route = {"virtual_host": "books"}
    stub = authz(running, "unix")
    read = await stub.Check(check_request(context_extensions=route, path="/api/books"))
    assert read.status.code == 0
    assert headers_of(read.ok_response.headers)["x-end-user"][0] == "anonymous"
    write = await stub.Check(check_request(method="POST", context_extensions=route, request_id="w1"))
    assert (write.status.code, write.denied_response.status.code) == (16, 401)
    token = {"iss": "https://issuer.example", "sub": "ann", "aud": "books"}
    signed = await stub.Check(check_request(method="POST", jwt=token, request_id="w2"))
    assert signed.status.code == 0
    assert headers_of(signed.ok_response.headers)["x-end-user"][0] == "https://issuer.example/ann"
    outside = await stub.Check(check_request(source=("203.0.113.9", 1)))
    assert outside.denied_response.status.code == 403
    tcp = authz(running, "tcp")  # the network filter's checks come over TCP
    db = lambda principal: check_request(http=False, destination=("10.4.5.6", 5432),  # noqa: E731
                                         source_principal=principal, source=("10.1.2.3", 40000))
    assert (await tcp.Check(db("spiffe://cluster.local/ns/books/sa/books"))).status.code == 0
    assert (await tcp.Check(db("spiffe://cluster.local/ns/shop/sa/web"))).status.code == 7
    # 20 a second per caller: the QuotaSpec charges every request
    codes = [(await stub.Check(check_request(source=("10.9.9.9", 1), request_id=f"q{i}"))).status.code
             for i in range(25)]
    assert codes.count(0) <= 20 and codes[-1] == 8


# --- Istio ------------------------------------------------------------------------------------------


def istio_documents() -> dict[str, dict]:
    documents = {}
    for path in sorted(ISTIO.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc and {"apiVersion", "kind", "metadata"} <= set(doc), path
            documents[doc["kind"]] = doc
    return documents


def test_istio_examples_refer_to_each_other_consistently():
    docs = istio_documents()
    assert set(docs) == {"IstioOperator", "ServiceEntry", "AuthorizationPolicy", "Telemetry", "ConfigMap",
                         "Deployment"}
    providers = {p["name"]: p for p in docs["IstioOperator"]["spec"]["meshConfig"]["extensionProviders"]}
    policy = docs["AuthorizationPolicy"]["spec"]
    assert policy["action"] == "CUSTOM"
    assert "envoyExtAuthzGrpc" in providers[policy["provider"]["name"]]
    logs = [p["name"] for entry in docs["Telemetry"]["spec"]["accessLogging"] for p in entry["providers"]]
    assert {"envoyHttpAls", "envoyTcpAls"} == {kind for name in logs for kind in providers[name] if kind != "name"}
    entry = docs["ServiceEntry"]["spec"]
    for provider in providers.values():
        (settings,) = [v for k, v in provider.items() if k != "name"]
        assert settings["service"] in entry["hosts"]
        assert settings["port"] in [p["number"] for p in entry["ports"]]
    assert entry["resolution"] == "STATIC" and entry["ports"][0]["protocol"] == "GRPC"
    (endpoint,) = entry["endpoints"]
    socket = endpoint["address"].removeprefix("unix://")

    deployment = docs["Deployment"]
    namespace = deployment["metadata"]["namespace"]
    for kind in ("ServiceEntry", "AuthorizationPolicy", "Telemetry", "ConfigMap"):
        assert docs[kind]["metadata"]["namespace"] == namespace, kind
    template = deployment["spec"]["template"]
    labels = template["metadata"]["labels"]
    for kind in ("AuthorizationPolicy", "Telemetry"):
        assert docs[kind]["spec"]["selector"]["matchLabels"].items() <= labels.items(), kind
    containers = {c["name"]: c for c in template["spec"]["containers"]}
    sidecar = containers["sidecar-policy"]
    args = sidecar["args"]
    assert args[args.index("--listen") + 1] == f"unix:{socket}"
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    (socket_volume,) = [name for name, path in mounts.items() if socket.startswith(path + "/")]
    assert "emptyDir" in volumes[socket_volume]
    proxy_mounts = json.loads(template["metadata"]["annotations"]["sidecar.istio.io/userVolumeMount"])
    assert {"name": socket_volume, "mountPath": mounts[socket_volume]} in proxy_mounts
    config_dir = args[args.index("--config") + 1]
    (config_volume,) = [name for name, path in mounts.items() if path == config_dir]
    assert volumes[config_volume]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    probe = " ".join(sidecar["readinessProbe"]["exec"]["command"])
    assert f"unix:{socket}" in probe and "envoy.service.auth.v3.Authorization" in probe


def test_istio_configmap_policy_loads(tmp_path):
    data = istio_documents()["ConfigMap"]["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    model = parse_config(tmp_path, build_plugin_host(autoload=False))
    assert model.warnings == [] and len(model.rules) == 3


async def test_istio_readiness_probe_command_checks_a_real_server(tmp_path, policy_server_factory):
    docs = istio_documents()
    sidecar = next(c for c in docs["Deployment"]["spec"]["template"]["spec"]["containers"]
                   if c["name"] == "sidecar-policy")
    command = sidecar["readinessProbe"]["exec"]["command"]
    socket = re.search(r"unix:(/[^\"]+)", command[2]).group(1)
    (tmp_path / "policy.yaml").write_text(docs["ConfigMap"]["data"]["policy.yaml"])
    running = await policy_server_factory(tmp_path)
    probe = [sys.executable, command[1], command[2].replace(socket, running.unix.removeprefix("unix:"))]
    assert command[0] == "python"
    code, errors = await _run(probe)  # the server shares this event loop: do not block it
    assert code == 0, errors
    await running.server.stop(grace=0.1)
    code, _ = await _run(probe)
    assert code != 0, shlex.join(probe)


async def _run(command: list[str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    _, errors = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, errors.decode()
