"""What the CLI says about a config: backends down (validate --build), configs enforcing nothing,
JSON log lines from serve, --listen forms. Real subprocesses, real exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from policy.cli import normalize_listen
from tests.serve_process import read_until

ROOT = Path(__file__).resolve().parents[2]


def policy(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "POLICY_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "policy.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nobody listens once the socket is closed


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


BACKENDS = """
    handlers:
      - {{name: list, adapter: listchecker, params: {{providerUrl: "file://{missing}"}}}}
      - name: quota
        adapter: redisquota
        params:
          redisServerUrl: 127.0.0.1:{port}
          quotas: [{{name: requests, maxAmount: 10, validDuration: 1s}}]
    instances:
      - {{name: who, template: listentry, params: {{value: source.principal | ""}}}}
      - {{name: requests, template: quota, params: {{dimensions: {{}}}}}}
    rules:
      - {{name: r, actions: [{{handler: list, instances: [who]}}, {{handler: quota, instances: [requests]}}]}}
"""


def test_validate_build_warns_about_a_missing_list_file_and_an_unreachable_redis(tmp_path):
    missing = tmp_path / "no-such-list.txt"
    path = write(tmp_path, BACKENDS.format(missing=missing, port=closed_port()))
    plain = policy("validate", str(path))
    assert plain.returncode == 0 and plain.stderr == "", plain.stderr
    built = policy("validate", "--build", str(path))
    assert built.returncode == 0, built.stderr
    warnings = [line for line in built.stderr.splitlines() if line.startswith("warning: ")]
    assert any(line.startswith("warning: handler list: ") and str(missing) in line for line in warnings), warnings
    assert any(line.startswith("warning: handler quota: ") and "redis" in line for line in warnings), warnings
    assert "2 start-up warning(s)" in built.stdout


AUTHZ_WITHOUT_RBAC = """
    handlers:
      - {name: stdout, adapter: stdio}
    ---
    apiVersion: security.istio.io/v1beta1
    kind: AuthorizationPolicy
    metadata: {name: deny-all, namespace: istio-system}
    spec: {action: DENY, rules: [{}]}
    ---
    apiVersion: rbac.istio.io/v1alpha2
    kind: ServiceRole
    metadata: {name: reader, namespace: default}
    spec: {rules: [{services: ["*"], methods: [GET]}]}
"""


def test_documents_nothing_applies_and_a_config_without_rules_are_warned_about(tmp_path):
    path = write(tmp_path, AUTHZ_WITHOUT_RBAC)
    result = policy("validate", str(path))
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.splitlines()
    assert f"warning: {path}: AuthorizationPolicy/deny-all.istio-system: not enforced" in "\n".join(warnings)
    assert any("ServiceRole/reader.default: not enforced" in w for w in warnings), warnings
    assert any("ServiceRole/reader.default: apiVersion: apiVersion 'rbac.istio.io/v1alpha2' is not one of"
               in w for w in warnings), warnings
    assert f"warning: {path}: rules: the config has no rules: every check is allowed" in warnings
    # The DENY-all policy really denies nothing: the warning is true.
    checked = policy("check", "--config", str(path))
    assert checked.returncode == 0 and "ALLOWED" in checked.stdout


def test_serve_logs_json_lines_banner_and_warnings_included(tmp_path):
    path = write(tmp_path, AUTHZ_WITHOUT_RBAC)
    env = {**os.environ, "POLICY_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "policy.cli", "serve", "--config", str(path),
                             "--listen", "127.0.0.1:0", "--watch-interval", "0", "--grace", "1"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        read_until(proc, "listening on")
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    records = [json.loads(line) for line in stderr.splitlines()]  # every line is JSON
    messages = [(r["level"], r["message"]) for r in records]
    assert any(level == "info" and m.startswith("listening on 127.0.0.1:") for level, m in messages), messages
    assert any(level == "info" and m.startswith(f"loaded {path}") for level, m in messages), messages
    not_enforced = [r for r in records if r["level"] == "warning" and "not enforced" in r["message"]]
    assert [r["document"] for r in not_enforced] == ["AuthorizationPolicy/deny-all.istio-system",
                                                     "ServiceRole/reader.default"]
    assert any(m.endswith("the config has no rules: every check is allowed") for _, m in messages)


@pytest.mark.parametrize("given, expected", [
    ("24505", "127.0.0.1:24505"), ("0", "127.0.0.1:0"), ("127.0.0.1:9191", "127.0.0.1:9191"),
    ("[::1]:9191", "[::1]:9191"), ("unix:/tmp/p.sock", "unix:/tmp/p.sock"), (" 8080 ", "127.0.0.1:8080"),
])
def test_listen_values_accepted(given, expected):
    assert normalize_listen(given) == expected


@pytest.mark.parametrize("given", ["localhost", "host:port", "99999", "unix:", ":9191", "1.2.3.4:70000"])
def test_listen_values_refused(given):
    with pytest.raises(ValueError, match="expected HOST:PORT or unix:PATH"):
        normalize_listen(given)


def test_serve_listens_on_a_bare_port_and_refuses_nonsense_before_grpc_sees_it(tmp_path):
    config = ROOT / "examples" / "quickstart"
    refused = policy("serve", "--config", str(config), "--listen", "localhost")
    assert refused.returncode == 2
    assert "expected HOST:PORT or unix:PATH" in refused.stderr and "grpc" not in refused.stderr.lower()
    port = closed_port()
    proc = subprocess.Popen([sys.executable, "-m", "policy.cli", "serve", "--config", str(config),
                             "--listen", str(port), "--watch-interval", "0", "--grace", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = read_until(proc, "listening on")
        assert lines[-1].strip() == f"policy: listening on 127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_check_logs_json_lines_when_stderr_is_not_a_terminal(tmp_path):
    missing = tmp_path / "no-such-list.txt"
    path = write(tmp_path, BACKENDS.format(missing=missing, port=closed_port()))
    result = policy("check", "--config", str(path))
    assert result.returncode in (0, 1), result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    assert any(r["level"] == "warning" and str(missing) in r["message"] for r in records), records
