"""The ``statsd`` and ``dogstatsd`` adapters: metric instances as statsd lines over UDP.

What they do
    Each ``metric`` instance named in ``metrics`` becomes one line,
    ``<prefix>.<name>:<value>|<type>``, where the name is the instance name or its
    ``nameTemplate`` filled from the dimensions. COUNTER sends ``|c``, GAUGE ``|g``,
    DISTRIBUTION ``|ms`` (statsd timers) or ``|d`` (DogStatsD distributions).
    Durations are sent in milliseconds; numbers as they are; numeric strings parsed.
    ``dogstatsd`` also appends ``|#key:value,...``: the constant ``tags`` and, unless
    ``dimensionsAsTags`` is false, every dimension. Lines are joined with ``\\n``
    into datagrams of at most ``flushBytes``; a datagram leaves when the next line
    would not fit, and at the latest ``flushDuration`` after its first line.

Params (Mixer's ``adapter.statsd.config.Params``; defaults are Mixer's)
    ``address``        ``host:port`` of the statsd server (default ``localhost:8125``).
    ``prefix``         prepended to every name with a ``.`` (default none).
    ``flushDuration``  longest a line waits before its datagram is sent (default 300ms;
                       0 sends at the end of each report batch).
    ``flushBytes``     largest datagram in bytes (default 512; 1432 suits a private network).
    ``samplingRate``   in (0, 1]: the share of counter and distribution values sent, each
                       line then carrying ``|@rate`` so the server scales it back (default 1).
    ``metrics``        instance name → ``{type: COUNTER | GAUGE | DISTRIBUTION,
                       nameTemplate: "{{.apiMethod}}-{{.responseCode}}"}``. Instances not
                       listed are not exported (as Mixer documented).
    ``dogstatsd`` only: ``tags`` (map of constant tags) and ``dimensionsAsTags`` (default true).

Fail mode
    Reports never affect checks. UDP is fire-and-forget: a datagram the kernel
    refuses is dropped, counted and logged (once until sending works again). A
    value that is not a number, or a template naming a missing dimension, skips
    that instance (logged once per instance and reason).

Limits
    Templates support only ``{{.dimension}}`` placeholders, not the rest of Go's
    text/template. Gauges are never sampled (a sampled-out gauge would lose its
    value). A negative plain-statsd gauge is sent as ``0|g`` then ``-N|g``, since
    statsd reads a signed gauge as a change; DogStatsD gauges are absolute. Mixer
    sent integer distributions as counters and rejected non-integer counters; here
    distributions are always timers/distributions and counters take any number.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import random
import re
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters._reportvalues import format_float, stringify
from policy import (
    Adapter,
    BuildContext,
    FieldError,
    Handler,
    Metric,
    ParamsError,
    hookimpl,
    param,
)


class MetricType(enum.Enum):
    """How a metric instance is sent."""

    UNKNOWN = "UNKNOWN"
    COUNTER = "COUNTER"
    GAUGE = "GAUGE"
    DISTRIBUTION = "DISTRIBUTION"


@dataclass(frozen=True)
class MetricInfo:
    """How one metric instance is represented in statsd."""

    type: MetricType = param(MetricType.UNKNOWN, doc="COUNTER, GAUGE or DISTRIBUTION.")
    name_template: str = param("", doc="The metric name, with {{.dimension}} placeholders (default: the instance name).")


@dataclass(frozen=True)
class StatsdParams:
    """Params of the ``statsd`` adapter."""

    address: str = param("localhost:8125", doc="host:port of the statsd server.")
    prefix: str = param("", doc="Prepended to every metric name, with a '.'.")
    flush_duration: dt.timedelta = param(dt.timedelta(milliseconds=300),
                                         doc="Longest a line waits before its datagram is sent (0: after each batch).")
    flush_bytes: int = param(512, doc="Largest datagram, in bytes.")
    sampling_rate: float = param(1.0, doc="Share of counter and distribution values sent, in (0, 1].")
    metrics: dict[str, MetricInfo] = param(default_factory=dict, doc="Instance name → how to send it.")


@dataclass(frozen=True)
class DogstatsdParams(StatsdParams):
    """Params of the ``dogstatsd`` adapter: statsd's plus tags."""

    tags: dict[str, str] = param(default_factory=dict, doc="Tags added to every line.")
    dimensions_as_tags: bool = param(True, doc="Send every dimension as a tag.")


_PLACEHOLDER = re.compile(r"\{\{\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NAME_UNSAFE = re.compile(r"[:|@#,\s]")
_TAG_UNSAFE = re.compile(r"[|#,\s]")


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8125`` for IPv6) → (host, port); ValueError naming the value."""
    host, sep, port = address.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port such as localhost:8125, got {address!r}")
    return host, int(port)


def _template_errors(name: str, template: str) -> Iterator[FieldError]:
    rest = _PLACEHOLDER.sub("", template)
    if "{{" in rest or "}}" in rest:
        yield FieldError(f"metrics[{name!r}].nameTemplate",
                         f"only {{{{.dimension}}}} placeholders are supported, got {template!r}")


class _Name:
    """A metric's statsd name: fixed, or a template's parts (text, and dimension names to fill in)."""

    __slots__ = ("fixed", "parts")

    def __init__(self, prefix: str, instance: str, template: str) -> None:
        self.fixed: str | None = None
        self.parts: list[tuple[str, bool]] = []
        if not template:
            self.fixed = _NAME_UNSAFE.sub("_", prefix + instance)
            return
        pos = 0
        for match in _PLACEHOLDER.finditer(template):
            self.parts.append((_NAME_UNSAFE.sub("_", template[pos:match.start()]), False))
            self.parts.append((match.group(1), True))
            pos = match.end()
        self.parts.append((_NAME_UNSAFE.sub("_", template[pos:]), False))
        self.parts[0] = (_NAME_UNSAFE.sub("_", prefix) + self.parts[0][0], False)

    def render(self, dimensions: Mapping[str, Any]) -> str:
        """The name for one instance; KeyError naming a missing dimension."""
        if self.fixed is not None:
            return self.fixed
        return "".join([_safe_name(stringify(dimensions[text])) if is_dimension else text
                        for text, is_dimension in self.parts])


_safe_names: dict[str, str] = {}


def _safe_name(text: str) -> str:
    """``text`` with the characters a statsd name cannot hold replaced by ``_`` (recent results remembered)."""
    safe = _safe_names.get(text)
    if safe is None:
        if len(_safe_names) >= 4096:  # dimension values are few in practice; never let them grow without bound
            _safe_names.clear()
        safe = _safe_names[text] = _NAME_UNSAFE.sub("_", text)
    return safe


def _validate(params: StatsdParams) -> Iterator[FieldError]:
    try:
        parse_address(params.address)
    except ValueError as exc:
        yield FieldError("address", str(exc))
    if params.flush_bytes <= 0:
        yield FieldError("flushBytes", f"must be > 0, got {params.flush_bytes}")
    if not 0 < params.sampling_rate <= 1:
        yield FieldError("samplingRate", f"must be in (0, 1], got {params.sampling_rate}")
    for name, info in params.metrics.items():
        if info.type is MetricType.UNKNOWN:
            yield FieldError(f"metrics[{name!r}].type", "is required: COUNTER, GAUGE or DISTRIBUTION")
        yield from _template_errors(name, info.name_template)


class _Datagrams:
    """Packs lines into datagrams of at most ``max_bytes`` and sends them from a non-blocking UDP socket."""

    def __init__(self, address: str, max_bytes: int, logger: logging.Logger) -> None:
        host, port = parse_address(address)
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except OSError as exc:
            raise ParamsError([FieldError("address", f"cannot resolve {host!r}: {exc.strerror or exc}")]) from exc
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._target = sockaddr
        self._max = max_bytes
        self._lines: list[str] = []
        self._size = 0
        self._log = logger
        self._failing = False
        self.sent = 0
        self.dropped = 0

    @property
    def pending(self) -> bool:
        """True when lines wait for their datagram."""
        return bool(self._lines)

    def add(self, line: str) -> None:
        """Queue one line; sends the datagram first when the line would not fit in it."""
        size = len(line) if line.isascii() else len(line.encode("utf-8"))
        lines = self._lines
        if lines and self._size + 1 + size > self._max:
            self.flush()
            lines = self._lines
        self._size += size + (1 if lines else 0)
        lines.append(line)
        if self._size >= self._max:
            self.flush()

    def flush(self) -> None:
        """Send the waiting lines as one datagram (dropped and counted if the kernel refuses it)."""
        if not self._lines:
            return
        payload = "\n".join(self._lines).encode("utf-8")
        self._lines, self._size = [], 0
        try:
            self._sock.sendto(payload, self._target)
        except OSError as exc:
            self.dropped += 1
            if not self._failing:
                self._failing = True
                self._log.warning("statsd datagram to %s dropped: %s (logged until sending works again)",
                                  self._target, exc)
            return
        self.sent += 1
        if self._failing:
            self._failing = False
            self._log.warning("statsd sending to %s works again (%d datagrams dropped so far)",
                              self._target, self.dropped)

    def close(self) -> None:
        """Send what waits and close the socket."""
        self.flush()
        self._sock.close()


class StatsdHandler(Handler):
    """Formats metric instances as statsd lines and batches them into datagrams."""

    #: The line type of a DISTRIBUTION.
    distribution_type = "ms"

    def __init__(self, params: StatsdParams, logger: logging.Logger,
                 sample: Callable[[], float] = random.random) -> None:
        self.params = params
        self._log = logger
        self._sample = sample
        prefix = f"{params.prefix}." if params.prefix else ""
        self._names = {name: (info, _Name(prefix, name, info.name_template)) for name, info in params.metrics.items()}
        self._flush_every = params.flush_duration.total_seconds()
        self._datagrams = _Datagrams(params.address, params.flush_bytes, logger)
        self._flusher: asyncio.Task[None] | None = None
        self._warned: set[tuple[str, str]] = set()
        self._closed = False
        self._tagged = type(self)._tags is not StatsdHandler._tags  # plain statsd lines carry no tags

    async def start(self) -> None:
        """Start flushing waiting lines every ``flushDuration``."""
        if self._flush_every > 0:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(), name="statsd-flush")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every)
            self._datagrams.flush()

    async def report(self, instances: Sequence[Any]) -> None:
        """Queue one line per instance listed in ``metrics`` (on the event loop: formatting only)."""
        if self._closed:
            raise RuntimeError("statsd handler is closed; the batch was not sent")
        for instance in instances:
            problem = self._line(instance)
            if problem is not None:
                self._warn_once(getattr(instance, "name", "?"), problem)
        if self._flusher is None or self._flush_every <= 0:
            self._datagrams.flush()

    def _line(self, instance: Any) -> str | None:
        if not isinstance(instance, Metric):
            return f"not a metric instance ({type(instance).__name__})"
        found = self._names.get(instance.name)
        if found is None:
            return None  # not listed: not exported
        info, naming = found
        try:
            name = naming.render(instance.dimensions)
        except KeyError as exc:
            return f"nameTemplate needs dimension {exc.args[0]!r}, which the instance lacks"
        value = instance.value
        if type(value) is not int and type(value) is not float:
            try:
                value = _statsd_value(value)
            except ValueError as exc:
                return str(exc)
        suffix = self._tags(instance.dimensions) if self._tagged else ""
        if info.type is MetricType.GAUGE:
            for text in self._gauge(value):
                self._datagrams.add(f"{name}:{text}|g{suffix}")
            return None
        rate = self.params.sampling_rate
        if rate < 1:
            if self._sample() >= rate:
                return None
            suffix = f"|@{format_float(rate)}{suffix}"
        kind = "c" if info.type is MetricType.COUNTER else self.distribution_type
        self._datagrams.add(f"{name}:{format_float(value)}|{kind}{suffix}")
        return None

    def _gauge(self, value: float) -> list[str]:
        if value < 0:
            return ["0", format_float(value)]  # statsd reads a signed gauge as a change
        return [format_float(value)]

    def _tags(self, dimensions: Mapping[str, Any]) -> str:
        return ""

    def _warn_once(self, name: str, problem: str) -> None:
        key = (name, problem.split(",", 1)[0])
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning("instance %s skipped: %s (logged once)", name, problem)

    async def close(self) -> None:
        """Stop the flush task, send what waits, close the socket."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        self._datagrams.close()


class DogstatsdHandler(StatsdHandler):
    """StatsdHandler with DogStatsD tags and distributions."""

    distribution_type = "d"

    def __init__(self, params: DogstatsdParams, logger: logging.Logger,
                 sample: Callable[[], float] = random.random) -> None:
        super().__init__(params, logger, sample)
        self._constant = {_TAG_UNSAFE.sub("_", k).replace(":", "_"): _TAG_UNSAFE.sub("_", v)
                          for k, v in params.tags.items()}
        self._dimension_tags = params.dimensions_as_tags

    def _gauge(self, value: float) -> list[str]:
        return [format_float(value)]  # DogStatsD gauges are absolute

    def _tags(self, dimensions: Mapping[str, Any]) -> str:
        tags = dict(self._constant)
        if self._dimension_tags:
            for key, value in dimensions.items():
                tags[_TAG_UNSAFE.sub("_", key).replace(":", "_")] = _TAG_UNSAFE.sub("_", stringify(value))
        if not tags:
            return ""
        return "|#" + ",".join(f"{k}:{v}" if v != "" else k for k, v in sorted(tags.items()))


def _statsd_value(value: Any) -> float:
    if isinstance(value, dt.timedelta):
        return value.total_seconds() * 1000.0
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a number, a duration or a numeric string, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number, a duration or a numeric string, got {value!r}")


class Statsd(Adapter[StatsdParams]):
    """Sends metric instances to a statsd server over UDP."""

    name = "statsd"
    description = "Sends metric instances to a statsd server over UDP"
    templates = ("metric",)
    Params = StatsdParams

    @classmethod
    def validate(cls, params: StatsdParams) -> Iterator[FieldError]:
        """Address well formed, sizes and rate in range, types given, templates supported."""
        return _validate(params)

    @classmethod
    def build(cls, params: StatsdParams, context: BuildContext) -> StatsdHandler:
        """Resolve the address and open a UDP socket (ParamsError naming ``address`` when it cannot)."""
        return StatsdHandler(params, context.logger)


class Dogstatsd(Adapter[DogstatsdParams]):
    """Sends metric instances to a DogStatsD agent over UDP, dimensions as tags."""

    name = "dogstatsd"
    description = "Sends metric instances to a DogStatsD agent over UDP, with tags"
    templates = ("metric",)
    Params = DogstatsdParams

    @classmethod
    def validate(cls, params: DogstatsdParams) -> Iterator[FieldError]:
        """statsd's checks."""
        return _validate(params)

    @classmethod
    def build(cls, params: DogstatsdParams, context: BuildContext) -> DogstatsdHandler:
        """Resolve the address and open a UDP socket."""
        return DogstatsdHandler(params, context.logger)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the ``statsd`` and ``dogstatsd`` adapters."""
    registry.add(Statsd)
    registry.add(Dogstatsd)


__all__ = [
    "Dogstatsd", "DogstatsdHandler", "DogstatsdParams", "MetricInfo", "MetricType", "Statsd", "StatsdHandler",
    "StatsdParams", "policy_register_adapters",
]
