"""Decision records mask credentials wherever they appear: query tokens, JWT claims, configurable names."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from policy import Code, Status
from policy.attributes import AttributeBag
from policy.runtime.decision_log import MASK, DecisionLog, with_extra_masks
from policy.logs import CLIP_CHARS, clip
from policy.runtime.decision import Decision

DENIED = Decision(status=Status(Code.PERMISSION_DENIED, "no"), rules=("r",), decision_id="d-1")


def test_access_token_in_the_query_is_masked_in_the_path_the_params_and_path_headers():
    request = AttributeBag({
        "request.path": "/api?x=1&access_token=s3cret&Token=t2#frag",
        "request.url_path": "/api",
        "request.query_params": {"x": "1", "access_token": "s3cret", "Token": "t2"},
        "request.headers": {":path": "/api?access_token=s3cret", "referer": "https://a/b?code=c0de&y=2",
                            "accept": "*/*"},
    })
    record = DecisionLog().record(DENIED, request)
    assert record["request.path"] == f"/api?x=1&access_token={MASK}&Token={MASK}#frag"
    assert record["request.query_params"] == {"x": "1", "access_token": MASK, "Token": MASK}
    assert record["request.headers"] == {":path": f"/api?access_token={MASK}", "referer": f"https://a/b?code={MASK}&y=2",
                                         "accept": "*/*"}
    assert "s3cret" not in repr(record.raw) and "c0de" not in repr(record.raw)
    assert request["request.path"].endswith("access_token=s3cret&Token=t2#frag")  # the request is untouched


def test_percent_encoded_names_and_paths_without_secrets_are_handled():
    log = DecisionLog()
    assert log.mask_query("/a?access%5Ftoken=x") == f"/a?access%5Ftoken={MASK}"
    assert log.mask_query("/a?x=1&y") == "/a?x=1&y"
    assert log.mask_query("/plain") == "/plain"


def test_jwt_claims_are_masked_keeping_their_names():
    request = AttributeBag({"request.auth.claims": {"sub": "alice", "email": "a@example.com"},
                            "request.auth.raw_claims": '{"sub":"alice"}', "request.auth.principal": "iss/alice"})
    record = DecisionLog().record(DENIED, request)
    assert record["request.auth.claims"] == {"sub": MASK, "email": MASK}
    assert record["request.auth.raw_claims"] == MASK
    assert record["request.auth.principal"] == "iss/alice"


def test_masked_names_are_configurable():
    request = AttributeBag({"request.path": "/a?session=s&access_token=t", "request.headers": {"x-secret": "y"},
                            "source.user": "u"})
    extended = with_extra_masks(DecisionLog(), ["query:session", "header:X-Secret", "attribute:source.user"])
    record = extended.record(DENIED, request)
    assert record["request.path"] == f"/a?session={MASK}&access_token={MASK}"
    assert record["request.headers"] == {"x-secret": MASK} and record["source.user"] == MASK
    bare = DecisionLog(masked_headers=[], masked_attributes=[], masked_query_params=[]).record(DENIED, request)
    assert bare["request.path"] == "/a?session=s&access_token=t"
    with pytest.raises(ValueError, match="header:NAME"):
        with_extra_masks(DecisionLog(), ["cookie"])


def test_serve_rejects_a_malformed_mask():
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "policy.cli", "serve", "--config", str(root / "examples/quickstart"),
                             "--decision-log", "--decision-log-mask", "nokind"], cwd=root, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "header:NAME" in result.stderr


def test_clip_bounds_request_text_in_log_lines():
    assert clip("short") == "short"
    long = "x" * 100_000
    clipped = clip(long)
    assert len(clipped) < CLIP_CHARS + 40 and clipped.endswith(f"({100_000 - CLIP_CHARS} more characters)")


async def test_a_failing_match_on_huge_input_logs_a_bounded_warning(policy_config, policy_service_factory, caplog):
    config = policy_config("""
handlers:
  - {name: deny, adapter: denier, params: {status: {code: 7}}}
instances:
  - {name: nothing, template: checknothing, params: {}}
rules:
  - {name: r, match: 'ip(request.headers["x-ip"]) == ip("10.0.0.1")', actions: [{handler: deny, instances: [nothing]}]}
""")
    service = await policy_service_factory(config)
    caplog.set_level(logging.WARNING)
    huge = "9" * 200_000
    await service.check({"request.headers": {"x-ip": huge}})
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines, "the failing match was not logged"
    assert all(len(line) < 1000 for line in lines), [len(line) for line in lines]


async def test_a_denial_quoting_huge_input_logs_a_bounded_decision_line(policy_config, policy_service_factory,
                                                                        caplog):
    config = policy_config("""
handlers:
  - {name: users, adapter: listchecker, params: {entryType: STRINGS, overrides: ["alice"]}}
instances:
  - {name: user, template: listentry, params: {value: 'request.headers["x-user"] | ""'}}
rules:
  - {name: users, actions: [{handler: users, instances: [user]}]}
""")
    service = await policy_service_factory(config)
    caplog.set_level(logging.INFO, logger="policy.decisions")
    decision = await service.check({"request.headers": {"x-user": "m" * 100_000}}, api="native")
    assert not decision.allowed
    lines = [r for r in caplog.records if r.name == "policy.decisions"]
    assert lines and all(len(r.getMessage()) < 1000 and len(str(r.reason)) < 1000 for r in lines)
