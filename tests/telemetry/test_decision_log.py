"""Decision logs: decisions through report rules (masked), and log lines carrying the decision id."""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import textwrap

from policy.attributes import AttributeBag
from policy.runtime.decision_log import MASK, DecisionLog
from policy.logs import JsonFormatter
from policy.runtime.decision import Decision
from policy.sdk import Code, Status
from policy.testing import ext_authz_request, native_check
from tests.reports.conftest import send_reports


def _config(tmp_path) -> str:
    return textwrap.dedent(f"""
        handlers:
          - name: deny
            adapter: denier
            params: {{status: {{code: 7, message: blocked}}, validDuration: 60s}}
          - {{name: decisions, adapter: stdio, params: {{logStream: FILE, outputPath: "{tmp_path / 'decisions.jsonl'}"}}}}
          - {{name: access, adapter: stdio, params: {{logStream: FILE, outputPath: "{tmp_path / 'access.jsonl'}"}}}}
        instances:
          - {{name: nothing, template: checknothing, params: {{}}}}
          - name: decision
            template: logentry
            params:
              severity: 'conditional(check.error_code == 0, "info", "warning")'
              variables:
                id: check.decision_id
                code: check.error_code
                message: check.error_message | ""
                cache_hit: check.cache_hit
                rules: check.rules
                path: request.path | ""
                user: request.headers["x-user"] | ""
                authorization: request.headers["authorization"] | ""
                cookie: request.headers["Cookie"] | ""
                api_key: request.api_key | ""
          - name: entry
            template: logentry
            params: {{variables: {{path: request.path | ""}}}}
        rules:
          - name: block-mallory
            match: request.headers["x-user"] == "mallory"
            actions: [{{handler: deny, instances: [nothing]}}]
          - name: decision-log
            match: context.reporter.kind == "decision"
            actions: [{{handler: decisions, instances: [decision]}}]
          - name: access-log
            match: (context.reporter.kind | "") != "decision"
            actions: [{{handler: access, instances: [entry]}}]
    """)


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


SECRET_HEADERS = {"x-user": "alice", "authorization": "Bearer s3cr3t", "Cookie": "session=abc"}


async def test_decisions_go_through_report_rules_with_secrets_masked(policy_server_factory, policy_config, tmp_path):
    running = await policy_server_factory(policy_config(_config(tmp_path)), unix=False, decision_log=True)
    native = running.native()
    allowed = [await native_check(native, {"request.path": "/a", "request.id": str(i), "request.api_key": "k-123",
                                           "request.headers": SECRET_HEADERS}) for i in range(2)]
    denied = await native_check(native, {"request.path": "/b", "request.headers": {"x-user": "mallory"}})
    envoy = await running.ext_authz().Check(ext_authz_request(path="/c", headers={"x-user": "mallory"}))
    await send_reports(running, [[{"request.path": "/reported"}]])
    assert await running.service.reports.drain(timeout=5)

    records = {line["variables"]["id"]: line for line in _lines(tmp_path / "decisions.jsonl")}
    assert len(records) == 4
    first, second = (records[a.decision_id]["variables"] for a in allowed)
    assert (first["code"], first["message"], first["rules"], first["path"]) == (0, "", "", "/a")
    assert (first["cache_hit"], second["cache_hit"]) == (False, True)
    assert first["user"] == "alice"  # ordinary headers are kept...
    assert first["authorization"] == MASK and first["cookie"] == MASK and first["api_key"] == MASK  # ...secrets not
    assert "s3cr3t" not in (tmp_path / "decisions.jsonl").read_text()
    blocked = records[denied.decision_id]
    assert blocked["variables"]["code"] == Code.PERMISSION_DENIED and blocked["level"] == "warn"
    assert "blocked" in blocked["variables"]["message"] and blocked["variables"]["rules"] == "block-mallory"
    # ext_authz puts the same id in Envoy's dynamic metadata, so the two logs join.
    envoy_id = envoy.dynamic_metadata.fields["decision_id"].string_value
    assert records[envoy_id]["variables"]["path"] == "/c"
    # Decision records and ordinary reports stay apart.
    assert [line["variables"]["path"] for line in _lines(tmp_path / "access.jsonl")] == ["/reported"]


async def test_without_decision_logging_no_decision_is_reported(policy_server_factory, policy_config, tmp_path):
    running = await policy_server_factory(policy_config(_config(tmp_path)), unix=False)
    await native_check(running.native(), {"request.path": "/a", "request.headers": {"x-user": "mallory"}})
    assert await running.service.reports.drain(timeout=5)
    assert _lines(tmp_path / "decisions.jsonl") == []


def test_masking_is_case_insensitive_configurable_and_leaves_the_request_alone():
    headers = {"Authorization": "Bearer x", "X-Secret": "y", "accept": "*/*"}
    request = AttributeBag({"request.headers": headers, "request.api_key": "k", "source.user": "u"})
    decision = Decision(status=Status(Code.PERMISSION_DENIED, "no"), rules=("r1", "r2"), decision_id="d-1")
    record = DecisionLog().record(decision, request)
    assert record["request.headers"] == {"Authorization": MASK, "X-Secret": "y", "accept": "*/*"}
    assert record["request.api_key"] == MASK and record["source.user"] == "u"
    assert (record["check.error_code"], record["check.error_message"], record["check.rules"]) == (7, "no", "r1,r2")
    assert record["check.decision_id"] == "d-1" and record["context.reporter.kind"] == "decision"
    assert request["request.headers"]["Authorization"] == "Bearer x"  # the request itself is untouched
    custom = DecisionLog(masked_headers=["x-secret"], masked_attributes=[]).record(decision, request)
    assert custom["request.headers"] == {"Authorization": "Bearer x", "X-Secret": MASK, "accept": "*/*"}
    assert custom["request.api_key"] == "k"


async def test_decision_log_lines_carry_the_decision_id_as_a_json_field(policy_server_factory, policy_config,
                                                                        tmp_path):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("policy.decisions")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        running = await policy_server_factory(policy_config(_config(tmp_path)), unix=False)
        allowed = await native_check(running.native(), {"request.path": "/a"})
        denied = await native_check(running.native(), {"request.headers": {"x-user": "mallory"},
                                                       "source.ip": ipaddress.ip_address("10.0.0.1")})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    # Denials are logged at INFO; allowed decisions only at DEBUG.
    assert [line["decision_id"] for line in lines] == [denied.decision_id]
    line = lines[0]
    assert allowed.decision_id != denied.decision_id
    assert (line["logger"], line["level"], line["api"], line["code"]) == ("policy.decisions", "info", "native",
                                                                          "PERMISSION_DENIED")
    assert line["rules"] == ["block-mallory"] and "blocked" in line["reason"] and line["duration_ms"] >= 0
    assert denied.decision_id in line["message"]


async def test_a_decision_record_is_taken_when_checked_though_built_later(policy_service_factory, policy_config,
                                                                         tmp_path):
    # Records are built in batches after the check returns: what the caller does with its dict
    # afterwards must not change them.
    service = await policy_service_factory(policy_config(_config(tmp_path)), decision_log=True)
    attributes = {"request.path": "/first", "request.headers": {"x-user": "alice"}}
    decision = await service.check(attributes)
    attributes["request.path"] = "/changed"
    attributes["request.headers"] = {"x-user": "mallory"}
    assert await service.reports.drain(timeout=5)
    (line,) = _lines(tmp_path / "decisions.jsonl")
    assert line["variables"]["id"] == decision.decision_id
    assert (line["variables"]["path"], line["variables"]["user"]) == ("/first", "alice")
