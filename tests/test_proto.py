"""The checked-in ``policy.v1`` modules: fresh against the .proto, and the service's shape."""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from packaging.requirements import Requirement
from packaging.version import Version

from policy import _protogen
from policy.v1 import policy_pb2, policy_pb2_grpc

GENERATED = ("policy_pb2.py", "policy_pb2.pyi", "policy_pb2_grpc.py")
CHECKED_IN = _protogen.ROOT / "policy" / "v1"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The modules regenerated from proto/ with the installed grpcio-tools."""
    pytest.importorskip("grpc_tools", reason="needs the 'proto' extra (grpcio-tools)")
    out = tmp_path_factory.mktemp("protogen")
    _protogen.generate(out)
    return out / "policy" / "v1"


def _stamps(directory: Path) -> tuple[str, str]:
    """The protobuf and grpcio versions that generated the modules in ``directory``."""
    pb2 = (directory / "policy_pb2.py").read_text()
    grpc = (directory / "policy_pb2_grpc.py").read_text()
    protobuf = re.search(r"^# Protobuf Python Version: (\S+)$", pb2, re.M)
    grpcio = re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'$", grpc, re.M)
    assert protobuf and grpcio, f"no version stamps in {directory}"
    return protobuf.group(1), grpcio.group(1)


def _serialized_descriptor(pb2_source: str) -> bytes:
    """The FileDescriptorProto bytes a generated ``_pb2.py`` registers, without importing it."""
    for node in ast.walk(ast.parse(pb2_source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            return ast.literal_eval(node.args[0])
    raise AssertionError("no AddSerializedFile call in the generated module")


def test_checked_in_modules_are_not_stale(fresh: Path) -> None:
    assert sorted(p.name for p in fresh.iterdir()) == sorted(GENERATED)
    stale = [
        name for name in GENERATED
        if not (CHECKED_IN / name).is_file()
        or (CHECKED_IN / name).read_bytes() != (fresh / name).read_bytes()
    ]
    if stale and _stamps(fresh) != _stamps(CHECKED_IN):
        # A different grpcio-tools writes different bytes for the same schema; the
        # descriptor test below still catches a schema change.
        pytest.skip(
            f"checked-in code was generated for (protobuf, grpcio) {_stamps(CHECKED_IN)},"
            f" the installed grpcio-tools generates for {_stamps(fresh)}"
        )
    assert not stale, (
        f"stale generated modules in policy/v1: {', '.join(stale)};"
        " regenerate with `make proto` (python -m policy._protogen)"
    )


def test_checked_in_descriptor_matches_proto(fresh: Path) -> None:
    expected = descriptor_pb2.FileDescriptorProto.FromString(
        _serialized_descriptor((fresh / "policy_pb2.py").read_text())
    )
    actual = descriptor_pb2.FileDescriptorProto.FromString(policy_pb2.DESCRIPTOR.serialized_pb)
    assert actual == expected, "policy_pb2 was generated from another policy.proto; make proto"


def test_protogen_check_names_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("grpc_tools", reason="needs the 'proto' extra (grpcio-tools)")
    assert _protogen.main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    for name in GENERATED:
        assert f"stale: {tmp_path / 'policy' / 'v1' / name}" in err

    assert _protogen.main(["--out", str(tmp_path)]) == 0
    assert _protogen.main(["--check", "--out", str(tmp_path)]) == 0
    assert "stale" not in capsys.readouterr().err


def test_setup_cfg_pins_admit_only_runtimes_the_generated_code_accepts() -> None:
    protobuf_stamp, grpcio_stamp = map(Version, _stamps(CHECKED_IN))
    cfg = configparser.ConfigParser()
    cfg.read(_protogen.ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    requirements = {
        r.name: r.specifier
        for r in (Requirement(line) for line in lines if line.strip())
        if r.name in ("protobuf", "grpcio")
    }
    for name, stamp in (("protobuf", protobuf_stamp), ("grpcio", grpcio_stamp)):
        lower = [Version(s.version) for s in requirements[name] if s.operator in (">=", "==")]
        assert lower and max(lower) >= stamp, f"setup.cfg must require {name}>={stamp}"
    # The protobuf runtime rejects gencode from a newer release, and majors may drop old gencode.
    assert Version(f"{protobuf_stamp.major + 1}") not in requirements["protobuf"]


def test_service_has_check_and_report() -> None:
    service = policy_pb2.DESCRIPTOR.services_by_name["Policy"]
    assert service.full_name == "policy.v1.Policy"
    methods = {
        m.name: (m.input_type.full_name, m.output_type.full_name, m.client_streaming,
                 m.server_streaming)
        for m in service.methods
    }
    assert methods == {
        "Check": ("policy.v1.CheckRequest", "policy.v1.CheckResponse", False, False),
        "Report": ("policy.v1.ReportRequest", "policy.v1.ReportResponse", False, False),
    }
    assert hasattr(policy_pb2_grpc, "PolicyStub")
    assert hasattr(policy_pb2_grpc.PolicyServicer, "Check")
    assert hasattr(policy_pb2_grpc, "add_PolicyServicer_to_server")


def test_messages_have_the_documented_shape() -> None:
    value = policy_pb2.Value.DESCRIPTOR
    assert [f.name for f in value.oneofs_by_name["kind"].fields] == [
        "string_value", "int64_value", "double_value", "bool_value", "bytes_value",
        "timestamp_value", "duration_value", "ip_address_value", "string_map_value",
    ]
    precondition = policy_pb2.CheckResponse.PreconditionResult.DESCRIPTOR
    assert precondition.fields_by_name["status"].message_type.full_name == "google.rpc.Status"
    assert set(precondition.fields_by_name) == {
        "status", "valid_duration", "valid_use_count", "referenced_attributes", "route_directive",
    }
    quota = policy_pb2.CheckResponse.QuotaResult.DESCRIPTOR
    assert set(quota.fields_by_name) == {
        "status", "valid_duration", "granted_amount", "referenced_attributes",
    }
    response = policy_pb2.CheckResponse.DESCRIPTOR
    assert set(response.fields_by_name) == {
        "precondition", "quotas", "matched_rules", "decision_id",
    }
    request = policy_pb2.CheckRequest.DESCRIPTOR
    assert {"attributes", "quotas", "deduplication_id"} == set(request.fields_by_name)
    assert policy_pb2.ReferencedAttributes.Condition.keys() == [
        "CONDITION_UNSPECIFIED", "ABSENCE", "EXACT", "REGEX",
    ]
    assert policy_pb2.HeaderOperation.Operation.keys() == ["REPLACE", "REMOVE", "APPEND"]


def test_generated_module_takes_status_from_google_rpc() -> None:
    # Both xds-protos and googleapis-common-protos provide google.rpc.status_pb2.
    source = (CHECKED_IN / "policy_pb2.py").read_text()
    assert "from google.rpc import status_pb2" in source
