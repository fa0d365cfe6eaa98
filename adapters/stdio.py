"""The ``stdio`` adapter: write log entries and metrics as lines to stdout, stderr or a file.

What it does
    Each ``logentry`` instance becomes one line holding its ``name``, ``timestamp``
    (RFC 3339, UTC, microseconds; the report time when the instance has none),
    ``level`` (``info`` / ``warn`` / ``error``), the original ``severity`` and its
    ``variables`` (keys sorted). Each ``metric`` instance becomes a line with
    ``name``, ``timestamp`` (report time), ``level`` (``metricLevel``), ``value`` and
    ``dimensions``. Values are JSON-encoded: datetimes as RFC 3339, durations as Go
    durations (``1m30s``), IP addresses as text, bytes as base64, maps as objects.

Params (defaults are Mixer's, from ``mixer/adapter/metadata``'s stdio entry)
    ``logStream``        ``STDOUT`` (default), ``STDERR``, ``FILE`` or ``ROTATED_FILE``.
    ``outputPath``       the file for FILE / ROTATED_FILE (relative to the config file).
    ``outputAsJson``     true (default): one JSON object per line; false: console lines
                         ``<timestamp>\\t<level>\\t<name>\\t<JSON of the rest>``.
    ``severityLevels``   severity string → INFO / WARNING / ERROR; defaults to Mixer's map
                         (INFO, info, INFORMATIONAL, WARNING, WARN, ERROR, ERR, FATAL ... in
                         both cases). Unknown severities are INFO.
    ``outputLevel``      the lowest level written; default INFO (everything).
    ``metricLevel``      the level of metric lines; default INFO.
    ``maxMegabytesBeforeRotation``  ROTATED_FILE: rotate once the file would exceed this
                         size; default 100 (0: never rotate).
    ``maxDaysBeforeRotation``  ROTATED_FILE: delete rotated files older than this many
                         days; default 30 (0: keep regardless of age).
    ``maxRotatedFiles``  ROTATED_FILE: keep at most this many rotated files; default 1000
                         (0: no limit).

Rotation
    The file is renamed to ``<stem>-<UTC time>.<suffix>`` (as Mixer's lumberjack did)
    and a new one is started; old rotated files are pruned on each rotation and at build.

Fail mode
    Reports never affect checks. A write error (disk full) raises from ``report``, and
    the host counts and logs it; the batch is lost.

Limits
    Lines are flushed once per batch; ``close()`` flushes and closes the file. Mixer
    placed variables at the top level of each line; here they sit under
    ``variables`` so they cannot clash with the fixed keys. Mixer swapped the
    max-days and max-files settings when configuring rotation; here each does what
    its name and Mixer's documentation say. A single line larger than the size limit
    is still written whole.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from adapters._reportvalues import go_duration, rfc3339
from policy import (
    Adapter,
    BuildContext,
    Clock,
    FieldError,
    Handler,
    LogEntry,
    Metric,
    ParamsError,
    hookimpl,
    param,
)


class Stream(enum.Enum):
    """Where lines go (Mixer's ``Params.Stream``)."""

    STDOUT = "STDOUT"
    STDERR = "STDERR"
    FILE = "FILE"
    ROTATED_FILE = "ROTATED_FILE"


class Level(enum.IntEnum):
    """Importance of a line (Mixer's ``Params.Level``)."""

    INFO = 0
    WARNING = 1
    ERROR = 2


_LEVEL_NAMES = {Level.INFO: "info", Level.WARNING: "warn", Level.ERROR: "error"}

#: Mixer's default severity map.
DEFAULT_SEVERITY_LEVELS: dict[str, Level] = {
    **{name: Level.INFO for name in ("INFORMATIONAL", "informational", "INFO", "info")},
    **{name: Level.WARNING for name in ("WARNING", "warning", "WARN", "warn")},
    **{name: Level.ERROR for name in ("ERROR", "error", "ERR", "err", "FATAL", "fatal")},
}


@dataclass(frozen=True)
class StdioParams:
    """Params of the ``stdio`` adapter (Mixer's ``adapter.stdio.config.Params``)."""

    log_stream: Stream = param(Stream.STDOUT, doc="STDOUT, STDERR, FILE or ROTATED_FILE.")
    severity_levels: dict[str, Level] = param(
        default_factory=lambda: dict(DEFAULT_SEVERITY_LEVELS),
        doc="Severity string → INFO, WARNING or ERROR.")
    metric_level: Level = param(Level.INFO, doc="The level of metric lines.")
    output_as_json: bool = param(True, doc="One JSON object per line (true) or console lines (false).")
    output_level: Level = param(Level.INFO, doc="The lowest level written.")
    output_path: str = param("", doc="The file for FILE and ROTATED_FILE (relative to the config file).")
    max_megabytes_before_rotation: int = param(
        100, doc="ROTATED_FILE: size in MB that triggers rotation (0: never).")
    max_days_before_rotation: int = param(
        30, doc="ROTATED_FILE: delete rotated files older than this many days (0: never).")
    max_rotated_files: int = param(1000, doc="ROTATED_FILE: how many rotated files to keep (0: all).")


# --- encoding ------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    if isinstance(value, dt.timedelta):
        return go_duration(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, enum.Enum):
        return value.name
    # IP addresses and networks print as their text; so does anything else (better than losing the line).
    return str(value)


_encoder = json.JSONEncoder(default=_json_default, ensure_ascii=False, separators=(",", ":"))


def _make_encode() -> Callable[[Any], str]:
    """``_encoder.encode`` for dicts, without building a new encoder per call (about 1 µs a line).

    ``JSONEncoder.encode`` makes its C encoder afresh on every call; this one is made once,
    with the same settings but no circular-reference bookkeeping (report values are built
    from attributes and cannot contain themselves; a cycle would still fail, with
    RecursionError), so it keeps no state between calls and is safe to share between the
    lanes' threads. Without the C accelerator it is ``_encoder.encode`` itself.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return _encoder.encode
    encoder = make(None, _json_default, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    join = "".join

    def encode(value: Any) -> str:
        return join(encoder(value, 0))

    return encode


_encode = _make_encode()


# --- sinks ---------------------------------------------------------------------


class _StreamSink:
    """The process's stdout or stderr, looked up at each write (so redirection is honoured)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def write(self, lines: Sequence[str]) -> None:
        stream = getattr(sys, self._name)
        stream.write("".join(lines))
        stream.flush()

    def close(self) -> None:
        getattr(sys, self._name).flush()


class _FileSink:
    """An append-only file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO = path.open("ab")

    def write(self, lines: Sequence[str]) -> None:
        self._file.write("".join(lines).encode("utf-8"))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _RotatingSink(_FileSink):
    """A file renamed to ``<stem>-<UTC time><suffix>`` when it would outgrow ``max_bytes``."""

    _STAMP = "%Y-%m-%dT%H-%M-%S.%f"

    def __init__(self, path: Path, max_bytes: int, max_days: int, max_files: int, clock: Clock) -> None:
        super().__init__(path)
        self.max_bytes, self.max_days, self.max_files, self.clock = max_bytes, max_days, max_files, clock
        self._size = path.stat().st_size
        stamp = r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{6}"
        self._backup = re.compile(
            rf"^{re.escape(path.stem)}-({stamp})(?:-(\d+))?{re.escape(path.suffix)}$")
        self.prune()

    def write(self, lines: Sequence[str]) -> None:
        for line in lines:
            data = line.encode("utf-8")
            if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
                self.rotate()
            self._file.write(data)
            self._size += len(data)
        self._file.flush()

    def rotate(self) -> None:
        """Rename the current file to a timestamped backup, start a new one, prune old backups."""
        self._file.close()
        stamp = dt.datetime.fromtimestamp(self.clock.now(), dt.timezone.utc).strftime(self._STAMP)
        target, n = self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}"), 0
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.stem}-{stamp}-{n}{self.path.suffix}")
        self.path.rename(target)
        self._file, self._size = self.path.open("ab"), 0
        self.prune()

    def backups(self) -> list[tuple[str, int, Path]]:
        """Rotated files of this path as (UTC stamp, sequence, path), oldest first."""
        found = []
        for candidate in self.path.parent.iterdir():
            match = self._backup.match(candidate.name)
            if match:
                found.append((match.group(1), int(match.group(2) or 0), candidate))
        return sorted(found)

    def prune(self) -> None:
        """Delete rotated files beyond ``max_files`` or older than ``max_days``."""
        backups = self.backups()
        doomed = backups[:-self.max_files] if self.max_files and len(backups) > self.max_files else []
        if self.max_days:
            cutoff = dt.datetime.fromtimestamp(self.clock.now() - self.max_days * 86400, dt.timezone.utc)
            oldest_kept = cutoff.strftime(self._STAMP)  # stamps sort as the times they encode
            doomed += [b for b in backups if b[0] < oldest_kept]
        for *_, path in doomed:
            path.unlink(missing_ok=True)


# --- handler and adapter ---------------------------------------------------------


class StdioHandler(Handler):
    """Formats report instances as lines and writes each batch with one call."""

    def __init__(self, params: StdioParams, sink: Any, clock: Clock) -> None:
        self.params = params
        self._sink = sink
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False

    def report(self, instances: Sequence[Any]) -> None:
        """Write one line per instance at or above ``outputLevel`` (called from a worker thread).

        Instances without a timestamp of their own carry the time of this call.
        """
        now: list[str] = []  # the report time, formatted once per batch when first needed
        line = self._line
        lines = [text for text in (line(instance, now) for instance in instances) if text is not None]
        with self._lock:
            if self._closed:
                raise RuntimeError("stdio handler is closed; the batch was not written")
            if lines:
                self._sink.write(lines)

    def _now(self, now: list[str]) -> str:
        if not now:
            now.append(rfc3339(dt.datetime.fromtimestamp(self._clock.now(), dt.timezone.utc)))
        return now[0]

    def _line(self, instance: Any, now: list[str]) -> str | None:
        params = self.params
        if isinstance(instance, LogEntry):
            level = params.severity_levels.get(instance.severity or "", Level.INFO)
            if level < params.output_level:
                return None
            when = rfc3339(instance.timestamp) if instance.timestamp else self._now(now)
            record: dict[str, Any] = {
                "name": instance.name, "timestamp": when, "level": _LEVEL_NAMES[level],
                "severity": instance.severity, "variables": dict(sorted(instance.variables.items())),
            }
        elif isinstance(instance, Metric):
            level = params.metric_level
            if level < params.output_level:
                return None
            record = {
                "name": instance.name, "timestamp": self._now(now), "level": _LEVEL_NAMES[level],
                "value": instance.value, "dimensions": dict(sorted(instance.dimensions.items())),
            }
        else:
            raise TypeError(f"stdio handles logentry and metric instances, not {type(instance).__name__}")
        if params.output_as_json:
            return _encode(record) + "\n"
        head = "\t".join((record.pop("timestamp"), record.pop("level"), record.pop("name")))
        return f"{head}\t{_encode(record)}\n"

    async def close(self) -> None:
        """Flush what was written and close the file (stdout/stderr are only flushed)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._sink.close()


class Stdio(Adapter[StdioParams]):
    """Writes log entries and metrics to stdout, stderr or a (rotated) file."""

    name = "stdio"
    description = "Writes logs and metrics to a standard I/O stream or a file"
    templates = ("logentry", "metric")
    Params = StdioParams

    @classmethod
    def validate(cls, params: StdioParams) -> Iterator[FieldError]:
        """A file stream needs ``outputPath``; rotation bounds are non-negative."""
        if params.log_stream in (Stream.FILE, Stream.ROTATED_FILE) and not params.output_path.strip():
            yield FieldError("outputPath", f"required when logStream is {params.log_stream.name}")
        bounds = (("maxMegabytesBeforeRotation", params.max_megabytes_before_rotation),
                  ("maxDaysBeforeRotation", params.max_days_before_rotation),
                  ("maxRotatedFiles", params.max_rotated_files))
        for key, value in bounds:
            if value < 0:
                yield FieldError(key, f"must be >= 0, got {value}")

    @classmethod
    def build(cls, params: StdioParams, context: BuildContext) -> StdioHandler:
        """Open the output (a file is created if missing, and appended to).

        A file that cannot be opened raises ParamsError naming ``outputPath``.
        """
        sink: Any
        if params.log_stream is Stream.STDOUT:
            sink = _StreamSink("stdout")
        elif params.log_stream is Stream.STDERR:
            sink = _StreamSink("stderr")
        else:
            path = Path(params.output_path).expanduser()
            path = path if path.is_absolute() else context.config_dir / path
            try:
                if params.log_stream is Stream.FILE:
                    sink = _FileSink(path)
                else:
                    sink = _RotatingSink(path, params.max_megabytes_before_rotation * 1024 * 1024,
                                         params.max_days_before_rotation, params.max_rotated_files,
                                         context.clock)
            except OSError as exc:
                problem = FieldError("outputPath", f"cannot open {path}: {exc.strerror or exc}")
                raise ParamsError([problem]) from exc
        return StdioHandler(params, sink, context.clock)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the ``stdio`` adapter."""
    registry.add(Stdio)


__all__ = ["Level", "Stdio", "StdioHandler", "StdioParams", "Stream", "policy_register_adapters"]
