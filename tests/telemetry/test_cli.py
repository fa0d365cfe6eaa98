"""`policy serve --metrics-listen` as a process: Prometheus text over HTTP, JSON logs joined by decision id."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from policy.servers.native_codec import attributes_to_proto
from policy.v1 import policy_pb2, policy_pb2_grpc
from tests.reports._receivers import scrape_text
from tests.serve_process import bound_address, read_until

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
handlers:
  - name: deny
    adapter: denier
    params: {status: {code: 7, message: blocked}, validDuration: 60s}
instances:
  - {name: nothing, template: checknothing, params: {}}
rules:
  - name: block-mallory
    match: request.headers["x-user"] == "mallory"
    actions: [{handler: deny, instances: [nothing]}]
"""


def _serve(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "policy.cli", "serve", "--config", str(config),
                             "--watch-interval", "0", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_serve_exports_metrics_and_logs_decisions_as_json(tmp_path):
    config = tmp_path / "policy.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    proc = _serve(config, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
    try:
        lines = read_until(proc, "metrics on http://")
        address = lines[-1].strip().split("http://", 1)[1].removesuffix("/metrics")
        with grpc.insecure_channel(bound_address(lines)) as channel:
            stub = policy_pb2_grpc.PolicyStub(channel)
            denied = stub.Check(policy_pb2.CheckRequest(attributes=attributes_to_proto(
                {"request.headers": {"x-user": "mallory"}})), timeout=5)
            allowed = stub.Check(policy_pb2.CheckRequest(attributes=attributes_to_proto({})), timeout=5)
        assert denied.precondition.status.code == 7 and allowed.precondition.status.code == 0
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(scrape_text(address)) for s in f.samples}
        assert samples[("policy_decisions_total", (("api", "native"), ("code", "PERMISSION_DENIED")))] == 1
        assert samples[("policy_decisions_total", (("api", "native"), ("code", "OK")))] == 1
        assert samples[("policy_config_generation", ())] == 1
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    # stderr is not a terminal: one JSON object per line, the decision's id a field of its own.
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    decisions = [r for r in records if r["logger"] == "policy.decisions"]
    assert [r["decision_id"] for r in decisions] == [denied.decision_id]
    assert decisions[0]["code"] == "PERMISSION_DENIED" and decisions[0]["api"] == "native"


def test_serve_rejects_a_malformed_metrics_address(tmp_path):
    config = tmp_path / "policy.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    proc = _serve(config, "--listen", "127.0.0.1:0", "--metrics-listen", "9090")
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--metrics-listen" in stderr and "HOST:PORT" in stderr


def test_serve_reports_a_busy_metrics_port(tmp_path):
    config = tmp_path / "policy.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        proc = _serve(config, "--listen", "127.0.0.1:0", "--metrics-listen", f"127.0.0.1:{busy}")
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert f"127.0.0.1:{busy}" in stderr and "cannot listen" in stderr
