"""`policy serve` as a process: it says where it listens, and SIGTERM drains and delivers every report."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc

from policy.servers.native_codec import attributes_to_proto
from policy.v1 import policy_pb2, policy_pb2_grpc
from tests.serve_process import read_until

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_delivers_every_accepted_report(tmp_path):
    log = tmp_path / "reports.jsonl"
    config = tmp_path / "policy.yaml"
    config.write_text(textwrap.dedent(f"""
        handlers:
          - {{name: log, adapter: stdio, params: {{logStream: FILE, outputPath: "{log}"}}}}
        instances:
          - name: entry
            template: logentry
            params: {{severity: '"info"', variables: {{path: request.path}}}}
        rules:
          - {{name: log, actions: [{{handler: log, instances: [entry]}}]}}
    """))
    sock = tmp_path / "p.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "policy.cli", "serve", "--config", str(config), "--listen", "127.0.0.1:0",
         "--listen", f"unix:{sock}", "--log-level", "warning"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        text = "".join(read_until(proc, "listening on unix"))
        assert re.search(r"listening on 127\.0\.0\.1:[1-9][0-9]*\n", text)  # port 0: the one bound
        assert f"listening on unix:{sock}" in text
        assert "policy.v1.Policy" in text
        total = 0
        with grpc.insecure_channel(f"unix:{sock}") as channel:
            stub = policy_pb2_grpc.PolicyStub(channel)
            for batch in range(20):
                request = policy_pb2.ReportRequest(attributes=[
                    attributes_to_proto({"request.path": f"/{batch}/{i}"}) for i in range(50)])
                stub.Report(request, timeout=5)
                total += 50
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out
    paths = [json.loads(line)["variables"]["path"] for line in log.read_text().splitlines()]
    assert len(paths) == total
    assert len(set(paths)) == total
    assert not sock.exists()


def test_serve_refuses_a_bad_config_with_exit_2(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("rules:\n  - {name: r, actions: [{handler: nope, instances: [x]}]}\n")
    result = subprocess.run([sys.executable, "-m", "policy.cli", "serve", "--config", str(config),
                             "--listen", "127.0.0.1:0"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "nope" in result.stderr and str(config) in result.stderr


def test_serve_reports_a_busy_port(tmp_path):
    import socket

    config = tmp_path / "ok.yaml"
    config.write_text("rules: []\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "policy.cli", "serve", "--config", str(config),
                                 "--listen", f"127.0.0.1:{port}"], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr
