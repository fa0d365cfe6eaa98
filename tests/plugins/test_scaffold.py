"""``policy new-adapter`` end to end: generate, pip install, list, serve, run the generated tests."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys

import grpc
import pytest

from policy.servers.native_codec import attributes_to_proto
from policy.testing import native_check
from policy.v1 import policy_pb2, policy_pb2_grpc
from tests.plugins.conftest import KINDS, Installed, policy, run


@pytest.mark.parametrize("kind", KINDS)
def test_generated_package_layout(installed, kind):
    root = installed.generated[kind]
    package = f"policy_adapter_demo_{kind}"
    built = ("build", "__pycache__")  # what installing it left beside the sources
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                   if p.is_file() and not set(p.relative_to(root).parts) & set(built) and ".egg-info" not in str(p))
    assert files == ["README.md", "example/policy.yaml", f"{package}/__init__.py", "pyproject.toml",
                     "setup.cfg", "tests/conftest.py", "tests/test_adapter.py"]
    setup = (root / "setup.cfg").read_text()
    assert f"policy.adapters =\n    demo-{kind} = {package}" in setup
    assert "name = policy-adapter-demo-" + kind in setup
    source = (root / package / "__init__.py").read_text()
    for section in ("What it does", "Params", "Fail mode", "Limits"):
        assert f"\n{section}\n" in source, section
    assert "check_adapter_conformance" in (root / "tests" / "test_adapter.py").read_text()
    validated = policy("validate", str(root / "example"))
    assert validated.returncode == 0, validated.stderr
    assert "OK" in validated.stdout


def test_installed_adapters_are_listed_beside_the_builtins(installed):
    listed = policy("adapters", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    for kind in KINDS:
        row = rows[f"demo-{kind}"]
        assert (row["distribution"], row["version"]) == (f"policy-adapter-demo-{kind}", "0.1.0")
    assert rows["demo-check"]["templates"] == ["authorization"]
    assert rows["demo-quota"]["templates"] == ["quota"]
    assert rows["demo-report"]["templates"] == ["logentry"]
    assert (rows["jwt"]["distribution"], rows["jwt"]["templates"]) == ("policy-adapter-jwt", ["bearertoken"])
    assert rows["denier"]["distribution"] == "sidecar-policy"
    table = policy("adapters").stdout
    assert any(line.startswith("demo-quota") and "policy-adapter-demo-quota 0.1.0" in line
               for line in table.splitlines())
    builtins_only = json.loads(policy("adapters", "--json", "--no-autoload").stdout)
    assert "demo-check" not in {row["name"] for row in builtins_only}


@pytest.mark.parametrize("kind", KINDS)
def test_generated_tests_pass(installed, kind):
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", cwd=installed.generated[kind])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout


def test_serve_a_generated_check_adapter(installed, serve, tmp_path):
    config = shutil.copytree(installed.generated["check"] / "example", tmp_path / "config")
    served = serve(config)

    async def ask() -> list[tuple[int, str]]:
        async with grpc.aio.insecure_channel(served.address) as channel:
            stub = policy_pb2_grpc.PolicyStub(channel)
            out = []
            for user in ("alice", "mallory"):
                response = await native_check(stub, {"request.headers": {"x-user": user}})
                out.append((response.precondition.status.code, response.precondition.status.message))
            return out

    assert asyncio.run(ask()) == [(0, ""), (7, "users: user 'mallory' is not allowed")]
    assert "policy: stopped" in served.stop()


def test_serve_a_generated_quota_adapter(installed, serve, tmp_path):
    config = shutil.copytree(installed.generated["quota"] / "example", tmp_path / "config")
    served = serve(config)

    async def ask() -> list[tuple[int, int]]:
        async with grpc.aio.insecure_channel(served.address) as channel:
            stub = policy_pb2_grpc.PolicyStub(channel)
            out = []
            for amount in (2, 2, 1):
                response = await native_check(stub, {"request.headers": {"x-user": "ann"}}, {"requests": amount})
                quota = response.quotas["requests"]
                out.append((quota.status.code, quota.granted_amount))
            return out

    # 3 per minute: 2 granted, 2 more refused, 1 more granted (unless the minute turned over in between).
    answers = asyncio.run(ask())
    assert answers[0] == (0, 2)
    assert answers[1] in ((8, 0), (0, 2))
    assert answers[2] == (0, 1)


def test_serve_a_generated_report_adapter(installed, serve, tmp_path):
    config = shutil.copytree(installed.generated["report"] / "example", tmp_path / "config")
    served = serve(config)

    async def report() -> None:
        async with grpc.aio.insecure_channel(served.address) as channel:
            stub = policy_pb2_grpc.PolicyStub(channel)
            await stub.Report(policy_pb2.ReportRequest(attributes=[
                attributes_to_proto({"request.path": "/books", "request.headers": {"x-user": "ann"}})]))

    asyncio.run(report())
    served.stop()  # a graceful stop flushes the reports
    (line,) = (config / "access.jsonl").read_text().splitlines()
    assert json.loads(line)["variables"] == {"path": "/books", "user": "ann"}


def test_new_adapter_refuses_bad_input(tmp_path):
    taken = policy("new-adapter", "denier", "--kind", "check", "--dir", str(tmp_path / "a"))
    assert taken.returncode == 2 and "already taken" in taken.stderr
    bad = policy("new-adapter", "My_Adapter", "--kind", "check", "--dir", str(tmp_path / "b"))
    assert bad.returncode == 2 and "lowercase letters" in bad.stderr
    kind = policy("new-adapter", "fine", "--kind", "mutate", "--dir", str(tmp_path / "c"))
    assert kind.returncode == 2 and "'mutate' is not one of" in kind.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    occupied = policy("new-adapter", "fine", "--kind", "check", "--dir", str(tmp_path / "full"))
    assert occupied.returncode == 2 and "not an empty directory" in occupied.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_default_directory_is_named_after_the_distribution(tmp_path):
    result = policy("new-adapter", "team-allow", "--kind", "check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "policy-adapter-team-allow" / "policy_adapter_team_allow" / "__init__.py").is_file()
    assert "pip install -e '.[test]'" in result.stdout
    assert Installed.adapter("check") == "demo-check"
