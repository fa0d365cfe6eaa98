"""The stdio adapter: JSON lines, value encoding, severity filter, streams, files and rotation."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json

import pytest

from adapters._reportvalues import rfc3339
from adapters.stdio import Stdio
from policy import BuildContext, Clock, LogEntry, Metric, ParamsError, describe_params, parse_params

UTC = dt.timezone.utc


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def log(severity, name="accesslog", **variables):
    return LogEntry(name, variables, dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC), severity)


async def test_file_json_lines_with_encoded_values(build, tmp_path):
    out = tmp_path / "access.log"
    handler = build(Stdio, {"logStream": "FILE", "outputPath": "access.log"})  # relative to config_dir
    entry = LogEntry(
        "accesslog.instance",
        {
            "source_ip": ipaddress.ip_address("10.0.0.1"),
            "dest_ip": ipaddress.ip_address("2001:db8::1"),
            "latency": dt.timedelta(minutes=1, seconds=30, milliseconds=500),
            "short": dt.timedelta(milliseconds=250),
            "when": dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "body": b"\x00\xffhi",
            "headers": {"x-a": "1"},
            "code": 200,
            "user": "alice",
        },
        dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC),
        "WARNING",
    )
    await asyncio.to_thread(handler.report, [entry])  # the host calls report from a worker thread
    await handler.close()
    (line,) = read_lines(out)
    assert line["name"] == "accesslog.instance"
    assert line["timestamp"] == "2024-05-01T12:00:00.250000Z"
    assert (line["severity"], line["level"]) == ("WARNING", "warn")
    v = line["variables"]
    assert list(v) == sorted(v)
    assert v["source_ip"] == "10.0.0.1" and v["dest_ip"] == "2001:db8::1"
    assert (v["latency"], v["short"]) == ("1m30.5s", "250ms")
    assert v["when"] == "2024-05-01T12:00:00.000000Z"
    assert base64.b64decode(v["body"]) == b"\x00\xffhi"
    assert v["headers"] == {"x-a": "1"}
    assert (v["code"], v["user"]) == (200, "alice")


def test_severity_mapping_and_output_level(build, tmp_path):
    handler = build(Stdio, {"logStream": "FILE", "outputPath": str(tmp_path / "a.log"), "outputLevel": "WARNING"})
    handler.report([log("info", n=1), log("WARN", n=2), log("debug", n=3), log(None, n=4),
                    log("FATAL", n=5), log("err", n=6)])
    lines = read_lines(tmp_path / "a.log")
    assert [(x["variables"]["n"], x["level"]) for x in lines] == [(2, "warn"), (5, "error"), (6, "error")]


def test_custom_severity_levels_replace_the_default_map(build, tmp_path):
    handler = build(Stdio, {"logStream": "FILE", "outputPath": "a.log", "outputLevel": "ERROR",
                            "severityLevels": {"page": "ERROR"}})
    handler.report([log("page", n=1), log("FATAL", n=2)])
    assert [x["variables"]["n"] for x in read_lines(tmp_path / "a.log")] == [1]


def test_missing_timestamp_uses_the_clock(build, tmp_path, fake_clock):
    handler = build(Stdio, {"logStream": "FILE", "outputPath": "a.log"}, clock=fake_clock.clock)
    handler.report([LogEntry("x", {"k": "v"})])
    (line,) = read_lines(tmp_path / "a.log")
    expected = dt.datetime.fromtimestamp(fake_clock.wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert line["timestamp"] == expected
    assert (line["level"], line["severity"]) == ("info", None)


def test_a_batch_reads_the_clock_once_and_keeps_instance_timestamps(build, tmp_path, fake_clock):
    reads = []

    def now():
        reads.append(fake_clock.wall)
        fake_clock.advance(1)  # a second clock read would give a later time
        return reads[-1]

    handler = build(Stdio, {"logStream": "FILE", "outputPath": "b.log"}, clock=Clock(now=now))
    handler.report([LogEntry("x", {"k": 1}), log("info"), Metric("m", 2, {"a": "b"}), LogEntry("y")])
    lines = read_lines(tmp_path / "b.log")
    report_time = dt.datetime.fromtimestamp(reads[0], UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert len(reads) == 1
    assert [line["timestamp"] for line in lines] == [report_time, "2024-05-01T12:00:00.250000Z", report_time,
                                                     report_time]


def test_lines_are_what_the_stdlib_encoder_writes(build, tmp_path):
    handler = build(Stdio, {"logStream": "FILE", "outputPath": "e.log"})
    variables = {"z": "ünïcode \u2028 \"quoted\"\n", "a": [1, 2.5, None, True], "m": {"k": {"n": 1}},
                 "f": 1e16, "ip": ipaddress.ip_address("::1"), "s": frozenset({"b", "a"})}
    handler.report([LogEntry("x", variables, dt.datetime(2024, 5, 1, tzinfo=UTC), "info")])
    text = (tmp_path / "e.log").read_text(encoding="utf-8")
    expected = {"name": "x", "timestamp": "2024-05-01T00:00:00.000000Z", "level": "info", "severity": "info",
                "variables": {**dict(sorted(variables.items())), "ip": "::1", "s": ["a", "b"]}}
    assert text == json.dumps(expected, ensure_ascii=False, separators=(",", ":")) + "\n"


@pytest.mark.parametrize("when, text", [
    (dt.datetime(2024, 5, 1, 12, 0, 0, 250000), "2024-05-01T12:00:00.250000Z"),  # naive: taken as UTC
    (dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2024-05-01T12:00:00.000000Z"),
    (dt.datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "2024-12-31T23:59:59.999999Z"),
    (dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
     dt.datetime(999, 1, 2, 3, 4, 5).strftime("%Y-%m-%dT%H:%M:%S.%fZ")),  # as strftime writes early years
])
def test_rfc3339(when, text):
    assert rfc3339(when) == text


def test_metrics(build, tmp_path, fake_clock):
    handler = build(Stdio, {"logStream": "FILE", "outputPath": "m.log", "metricLevel": "ERROR",
                            "outputLevel": "WARNING"}, clock=fake_clock.clock)
    handler.report([Metric("requests", 3, {"code": 200, "path": "/"})])
    (line,) = read_lines(tmp_path / "m.log")
    assert (line["name"], line["value"], line["level"]) == ("requests", 3, "error")
    assert line["dimensions"] == {"code": 200, "path": "/"}
    quiet = build(Stdio, {"logStream": "FILE", "outputPath": "q.log", "outputLevel": "WARNING"})
    quiet.report([Metric("requests", 1)])
    assert (tmp_path / "q.log").read_text() == ""


def test_console_format(build, tmp_path):
    handler = build(Stdio, {"logStream": "FILE", "outputPath": "c.log", "outputAsJson": False})
    handler.report([log("info", user="alice")])
    timestamp, level, name, rest = (tmp_path / "c.log").read_text().rstrip("\n").split("\t")
    assert (timestamp, level, name) == ("2024-05-01T12:00:00.250000Z", "info", "accesslog")
    assert json.loads(rest) == {"severity": "info", "variables": {"user": "alice"}}


@pytest.mark.parametrize(("stream", "attr"), [("STDOUT", "out"), ("STDERR", "err")])
async def test_standard_streams(build, capsys, stream, attr):
    handler = build(Stdio, {"logStream": stream} if stream != "STDOUT" else None)
    handler.report([log("info", user="bob"), log("error", user="eve")])
    await handler.close()
    captured = getattr(capsys.readouterr(), attr)
    assert [json.loads(x)["variables"]["user"] for x in captured.splitlines()] == ["bob", "eve"]


async def test_report_after_close_fails_loudly(build, tmp_path):
    handler = build(Stdio, {"logStream": "FILE", "outputPath": "a.log"})
    handler.report([log("info", n=1)])
    await handler.close()
    with pytest.raises(RuntimeError, match="closed"):
        handler.report([log("info", n=2)])
    assert len(read_lines(tmp_path / "a.log")) == 1


def _big_batch(start, count):
    return [log("info", n=i, pad="x" * 2000) for i in range(start, start + count)]


async def test_rotation_by_size_keeps_every_line(build, tmp_path):
    handler = build(Stdio, {"logStream": "ROTATED_FILE", "outputPath": "r.log",
                            "maxMegabytesBeforeRotation": 1, "maxRotatedFiles": 0})
    for batch in range(5):
        handler.report(_big_batch(batch * 250, 250))  # ~0.5 MB per batch
    await handler.close()
    backups = sorted(p for p in tmp_path.iterdir() if p.name.startswith("r-") and p.suffix == ".log")
    assert len(backups) == 2
    files = [*backups, tmp_path / "r.log"]
    assert all(p.stat().st_size <= 1024 * 1024 for p in files)
    numbers = [line["variables"]["n"] for p in files for line in read_lines(p)]
    assert numbers == list(range(1250))


def test_rotation_keeps_at_most_max_rotated_files(build, tmp_path):
    handler = build(Stdio, {"logStream": "ROTATED_FILE", "outputPath": "r.log",
                            "maxMegabytesBeforeRotation": 1, "maxRotatedFiles": 1})
    for batch in range(8):
        handler.report(_big_batch(batch * 250, 250))
    backups = [p for p in tmp_path.iterdir() if p.name.startswith("r-")]
    assert len(backups) == 1
    assert read_lines(backups[0])[0]["variables"]["n"] > 0  # the oldest ones were deleted


def test_old_rotated_files_are_pruned_by_age(build, tmp_path, fake_clock):
    now = dt.datetime.fromtimestamp(fake_clock.wall, UTC)
    old = (now - dt.timedelta(days=3)).strftime("%Y-%m-%dT%H-%M-%S.%f")
    recent = (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H-%M-%S.%f")
    for stamp in (old, recent):
        (tmp_path / f"r-{stamp}.log").write_text("{}\n")
    (tmp_path / "other.log").write_text("keep me\n")
    build(Stdio, {"logStream": "ROTATED_FILE", "outputPath": "r.log", "maxDaysBeforeRotation": 2},
          clock=fake_clock.clock)
    names = {p.name for p in tmp_path.iterdir()}
    assert f"r-{old}.log" not in names
    assert {f"r-{recent}.log", "other.log", "r.log"} <= names


def test_unopenable_file_is_a_params_error(tmp_path):
    params = parse_params(Stdio.Params, {"logStream": "FILE", "outputPath": "missing-dir/a.log"})
    with pytest.raises(ParamsError) as info:
        Stdio.build(params, BuildContext(handler="h", config_dir=tmp_path))
    assert [e.field for e in info.value.errors] == ["outputPath"]
    assert "missing-dir" in info.value.errors[0].message


def test_validate():
    def errors(raw):
        return {e.field for e in Stdio.validate(parse_params(Stdio.Params, raw))}

    assert errors({"logStream": "FILE"}) == {"outputPath"}
    assert errors({"logStream": "ROTATED_FILE", "outputPath": "x", "maxRotatedFiles": -1,
                   "maxDaysBeforeRotation": -2}) == {"maxRotatedFiles", "maxDaysBeforeRotation"}
    assert errors({}) == set()


def test_schema_errors_and_docs():
    with pytest.raises(ParamsError) as info:
        parse_params(Stdio.Params, {"logStream": "SYSLOG", "severityLevels": {"debug": "DEBUG"}})
    assert {e.field for e in info.value.errors} == {"logStream", "severityLevels['debug']"}
    params = parse_params(Stdio.Params, {})
    assert (params.log_stream.name, params.output_as_json, params.output_level.name) == ("STDOUT", True, "INFO")
    assert (params.max_megabytes_before_rotation, params.max_days_before_rotation, params.max_rotated_files) == \
        (100, 30, 1000)
    assert params.severity_levels["FATAL"].name == "ERROR" and params.severity_levels["warn"].name == "WARNING"
    assert all(row["doc"] for row in describe_params(Stdio.Params))
