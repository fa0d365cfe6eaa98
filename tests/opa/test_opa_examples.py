"""examples/opa as a user runs it: ``policy check`` in a subprocess, and the remote config against a Data API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from adapters.opa._engine import PolicySource
from policy import Code

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "opa"


def policy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "policy.cli", *args, "--no-autoload"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_embedded_example_allows_readers_with_headers():
    result = policy("check", "--config", str(EXAMPLES / "embedded"), "--attr", "request.method=GET",
                    "--attr", "request.path=/people/7", "--attr", "request.headers[x-user]=bob")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "opa → opa (request): OK OPA: allowed by envoy/authz/result" in result.stdout
    assert "request header: REPLACE x-user-role: reader" in result.stdout
    assert "request header: REMOVE x-debug" in result.stdout


def test_embedded_example_refuses_anonymous_writes_with_status_and_body():
    result = policy("check", "--config", str(EXAMPLES / "embedded"), "--attr", "request.method=POST",
                    "--attr", "request.path=/people", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    decision = json.loads(result.stdout)
    assert decision["code"] == "PERMISSION_DENIED"
    assert decision["message"] == "opa: OPA: denied by envoy/authz/result"


async def test_remote_example_against_a_data_api(tmp_path, data_api, policy_service_factory):
    """No OPA binary here: the bundle is served by the embedded engine through OPA's Data API on 127.0.0.1."""
    api = await data_api(PolicySource(bundle_dir=EXAMPLES / "bundle"))
    config = (EXAMPLES / "remote" / "policy.yaml").read_text().replace("http://127.0.0.1:8181", api.url)
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "policy.yaml").write_text(config)
    service = await policy_service_factory(tmp_path / "remote")
    allowed = await service.check({"request.method": "POST", "request.path": "/people",
                                   "request.headers": {"x-user": "alice", "content-type": "application/json"},
                                   "request.body": json.dumps({"firstname": "Carol"})})
    assert allowed.allowed, allowed.message
    assert [(h.name, h.value) for h in allowed.request_headers][0] == ("x-user-role", "admin")
    anonymous = await service.check({"request.method": "GET", "request.path": "/people"})
    assert anonymous.code == Code.PERMISSION_DENIED
    assert (anonymous.http_status, anonymous.body) == (401, "who are you?")
