"""The ``policy`` command as a user runs it: a real subprocess, real exit codes and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"


def policy(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "policy.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def test_check_allowed_exits_0_and_explains():
    result = policy("check", "--config", str(QUICKSTART), "--attr", "source.ip=10.1.2.3",
                    "--attr", "request.path=/api/books")
    assert result.returncode == 0, result.stderr
    assert "ALLOWED" in result.stdout
    assert "internal-only → internal-networks (source-ip): OK" in result.stdout
    assert "referenced:" in result.stdout and "source.ip" in result.stdout
    assert "cache:      300s, 10000 uses" in result.stdout


def test_check_denied_exits_1_with_json():
    result = policy("check", "--config", str(QUICKSTART), "--attr", "source.ip=192.168.7.7", "--json")
    assert result.returncode == 1, result.stderr
    decision = json.loads(result.stdout)
    assert decision["code"] == "PERMISSION_DENIED"
    assert decision["message"].startswith("internal-networks:")
    assert decision["rules"] == ["internal-only"]
    assert {"name": "source.ip", "map_key": None, "condition": "EXACT"} in decision["referenced"]
    assert decision["valid_duration_s"] == 300
    assert decision["valid_use_count"] == 10000


def test_check_sets_map_keys_and_matches_header_rules():
    result = policy("check", "--config", str(QUICKSTART), "--attr", "source.ip=10.1.2.3",
                    "--attr", "request.headers[x-user]=mallory", "--json")
    assert result.returncode == 1
    decision = json.loads(result.stdout)
    assert decision["code"] == "PERMISSION_DENIED"
    assert "this user is blocked" in decision["message"]
    assert "block-mallory" in decision["rules"]


def test_check_namespace_scoped_mixer_rule():
    base = ["check", "--config", str(QUICKSTART), "--attr", "source.ip=10.1.2.3", "--attr", "request.method=DELETE"]
    scoped = policy(*base, "--attr", "destination.namespace=bookinfo", "--json")
    assert scoped.returncode == 1
    assert "bookinfo is read-only" in json.loads(scoped.stdout)["message"]
    elsewhere = policy(*base, "--attr", "destination.namespace=shop", "--json")
    assert elsewhere.returncode == 0, elsewhere.stdout


def test_check_quota_flag_reports_quota_results():
    result = policy("check", "--config", str(QUICKSTART), "--attr", "source.ip=10.1.2.3",
                    "--quota", "requests=2", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["quotas"]["requests"]["granted_amount"] == 2


@pytest.mark.parametrize("args, needle", [
    (["--attr", "source.ip=not-an-ip"], "source.ip is IP_ADDRESS"),
    (["--attr", "source.ipp=10.0.0.1"], "did you mean source.ip"),
    (["--attr", "novalue"], "expected NAME=VALUE"),
    (["--attr", "request.size=big"], "request.size is INT64"),
])
def test_check_usage_errors_exit_2(args, needle):
    result = policy("check", "--config", str(QUICKSTART), *args)
    assert result.returncode == 2
    assert needle in result.stderr


def test_check_bad_config_exits_2_naming_file_document_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""
        handlers:
          - {name: h, adapter: nosuchadapter}
        rules:
          - name: r
            match: source.ip ==
            actions: [{handler: missing, instances: [nothing]}]
    """))
    result = policy("check", "--config", str(bad), "--attr", "source.ip=10.0.0.1")
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "nosuchadapter" in result.stderr
    assert "match" in result.stderr


def test_validate_ok_and_warnings(tmp_path):
    ok = policy("validate", str(QUICKSTART))
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    volatile = tmp_path / "v.yaml"
    volatile.write_text(textwrap.dedent("""
        handlers:
          - {name: d, adapter: denier}
        instances:
          - {name: n, template: checknothing, params: {}}
        rules:
          - {name: per-request, match: request.id == "x", actions: [{handler: d, instances: [n]}]}
    """))
    warned = policy("validate", str(volatile))
    assert warned.returncode == 0
    assert "request.id" in warned.stderr and "cache" in warned.stderr


def test_validate_reports_every_error_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""
        handlers:
          - {name: a, adapter: listchecker, params: {entryType: IP_ADDRESSES, overrides: ["10.0.0.0/33"]}}
          - {name: b, adapter: denier, params: {bogus: 1}}
        instances:
          - {name: i, template: nosuchtemplate, params: {}}
    """))
    result = policy("validate", str(bad))
    assert result.returncode == 2
    assert "overrides[0]" in result.stderr
    assert "bogus" in result.stderr
    assert "nosuchtemplate" in result.stderr


def test_adapters_lists_builtins_with_distribution():
    result = policy("adapters", "--json")
    assert result.returncode == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["listchecker"]["distribution"] == "sidecar-policy"
    assert "listentry" in rows["listchecker"]["templates"]
    text = policy("adapters")
    assert "denier" in text.stdout and "sidecar-policy" in text.stdout


def test_help_is_helpful():
    result = policy("--help")
    assert result.returncode == 0
    for command in ("serve", "check", "validate", "adapters"):
        assert command in result.stdout
    check_help = policy("check", "--help").stdout
    assert "request.headers[x-user]=alice" in check_help
