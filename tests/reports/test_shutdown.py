"""`policy serve` as a process: SIGTERM delivers every report it accepted, even to a slow adapter.

The adapter is a third-party plugin installed the way pip would (a dist-info with an
entry point on the path); it spends a few milliseconds per instance, so when SIGTERM
arrives its queue still holds most of what was sent — which the metrics endpoint
shows before the signal, so the test proves a drain, not a race it happened to win.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from policy.servers.native_codec import attributes_to_proto
from policy.v1 import policy_pb2, policy_pb2_grpc
from tests.reports._receivers import scrape_text
from tests.serve_process import read_until

ROOT = Path(__file__).resolve().parents[2]


def _install_plugin(site: Path) -> None:
    dist = site / "policy_test_reports-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: policy-test-reports\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[policy.adapters]\ntestreports = tests.reports.plugins_for_reports\n")


def _queue_depth(address: str) -> float:
    for family in text_string_to_metric_families(scrape_text(address)):
        for sample in family.samples:
            if sample.name == "policy_report_queue_depth" and sample.labels == {"handler": "slow"}:
                return sample.value
    raise AssertionError("no policy_report_queue_depth{handler='slow'} sample")


def test_sigterm_delivers_every_accepted_report_to_a_slow_adapter(tmp_path):
    site = tmp_path / "site"
    _install_plugin(site)
    out = tmp_path / "delivered.jsonl"
    config = tmp_path / "policy.yaml"
    config.write_text(textwrap.dedent(f"""
        handlers:
          - {{name: slow, adapter: slowfile, timeout: 10s, params: {{path: "{out}", delayMs: 3}}}}
        instances:
          - {{name: entry, template: logentry, params: {{variables: {{id: request.id}}}}}}
        rules:
          - {{name: log, actions: [{{handler: slow, instances: [entry]}}]}}
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "policy.cli", "serve", "--config", str(config), "--listen", "127.0.0.1:0",
         "--metrics-listen", "127.0.0.1:0", "--watch-interval", "0", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    total = 600
    try:
        lines = read_until(proc, "metrics on http://")
        metrics = lines[-1].strip().split("http://", 1)[1].removesuffix("/metrics")
        (listening,) = [line for line in lines if "listening on 127.0.0.1:" in line]
        address = listening.strip().rsplit(" ", 1)[1]  # the port the server bound (it was given port 0)
        with grpc.insecure_channel(address) as channel:
            stub = policy_pb2_grpc.PolicyStub(channel)
            for batch in range(total // 100):
                stub.Report(policy_pb2.ReportRequest(attributes=[
                    attributes_to_proto({"request.id": f"{batch}-{i}"}) for i in range(100)]), timeout=5)
        waiting = _queue_depth(metrics)
        assert waiting > 0, "the adapter kept up; the test would not prove a drain"
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "policy: stopped" in stdout
    delivered = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert len(delivered) == total, f"{len(delivered)} of {total} delivered ({waiting:.0f} were queued at SIGTERM)"
    assert sorted(delivered) == sorted(f"{b}-{i}" for b in range(total // 100) for i in range(100))
    # The drain took about as long as the queued work: the process waited for it.
    assert time.monotonic() - signalled >= waiting * 0.003 * 0.5
