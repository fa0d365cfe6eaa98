"""The ``fluentd`` adapter: log entries to a fluentd daemon over the forward protocol (``fluent-logger``).

What it does
    Each ``logentry`` instance becomes one fluentd event, as Mixer's adapter made
    it: the record is the instance's ``variables`` plus ``severity``; the tag is the
    instance name, unless the variables hold a ``tag`` (then that is the tag, and
    the instance name goes into the record as ``name``); the time is the instance's
    ``timestamp`` (the report time when it has none). Durations become Go strings
    (``1.5s``), or whole milliseconds with ``integerDuration``; times RFC 3339
    strings; IP addresses text. Events are buffered in the handler and pushed on a
    worker thread when ``batchSize`` are waiting, and at the latest every
    ``pushInterval``.

Params
    ``address``            ``host:port`` of fluentd's forward input, or ``unix:///path``
                           (default ``localhost:24224``, Mixer's).
    ``tagPrefix``          prepended to every tag with a ``.`` (default none).
    ``integerDuration``    durations as integer milliseconds (default false: Go strings; Mixer's).
    ``subSecondPrecision`` send EventTime (nanoseconds) instead of whole seconds (default false).
    ``instanceBufferSize`` events the handler holds while waiting to push (default 1024);
                           when full, new events are dropped and counted.
    ``batchSize``          push as soon as this many events wait (default 100).
    ``pushInterval``       longest an event waits before a push (default 1s).
    ``pushTimeout``        socket timeout for connecting and sending (default 3s).
    ``bufferBytes``        what fluent-logger keeps while fluentd cannot be reached, resent
                           on the next push (default 8 MiB); beyond that it is dropped.

Fail mode
    Reports never affect checks. When fluentd cannot be reached, the push stops at
    the first failure and the events not sent stay buffered for the next push, so
    a black-holed address costs at most one ``pushTimeout`` per push. Events
    dropped (handler buffer full, fluent-logger buffer overflowed, or still
    unsent when the handler closes) are counted and make ``report`` raise, so the
    service counts the batch as failed and logs it.

Limits
    One event per forward ``Message`` (fluent-logger's public API), on one TCP
    connection kept open between pushes. Events dropped by a timer-driven push
    are logged, not raised (no batch is being reported then).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import ipaddress
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters._reportvalues import go_duration, rfc3339
from policy import (
    Adapter,
    AdapterError,
    BuildContext,
    Clock,
    Code,
    FieldError,
    Handler,
    LogEntry,
    hookimpl,
    param,
)


@dataclass(frozen=True)
class FluentdParams:
    """Params of the ``fluentd`` adapter."""

    address: str = param("localhost:24224", doc="host:port of fluentd's forward input, or unix:///path.")
    tag_prefix: str = param("", doc="Prepended to every tag, with a '.'.")
    integer_duration: bool = param(False, doc="Durations as integer milliseconds instead of Go strings.")
    sub_second_precision: bool = param(False, doc="Send EventTime (nanoseconds) instead of whole seconds.")
    instance_buffer_size: int = param(1024, doc="Events held while waiting to push; more are dropped.")
    batch_size: int = param(100, doc="Push as soon as this many events wait.")
    push_interval: dt.timedelta = param(dt.timedelta(seconds=1), doc="Longest an event waits before a push.")
    push_timeout: dt.timedelta = param(dt.timedelta(seconds=3), doc="Socket timeout for connecting and sending.")
    buffer_bytes: int = param(8 * 1024 * 1024, doc="Bytes fluent-logger keeps while fluentd is unreachable.")


def _host_port(address: str) -> tuple[str, int]:
    if address.startswith("unix://"):
        if len(address) <= len("unix://"):
            raise ValueError(f"expected unix:///path/to.sock, got {address!r}")
        return address, 0
    host, sep, port = address.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port such as localhost:24224 or unix:///path, got {address!r}")
    return host, int(port)


def _value(value: Any, integer_duration: bool) -> Any:
    """A variable as msgpack can carry it."""
    if isinstance(value, dt.timedelta):
        return int(value / dt.timedelta(milliseconds=1)) if integer_duration else go_duration(value)
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _value(v, integer_duration) for k, v in value.items()}
    if value is None or isinstance(value, (str, bytes, bool, int, float)):
        return value
    return str(value)


class FluentdHandler(Handler):
    """Buffers log entries and pushes them to fluentd from a worker thread.

    :param sender_type: fluent-logger's ``FluentSender`` (imported by ``build``, so a
        missing fluent-logger is a clear build error rather than an import error).
    """

    def __init__(self, params: FluentdParams, clock: Clock, logger: logging.Logger, sender_type: Any) -> None:
        host, port = _host_port(params.address)
        self.params = params
        self._clock = clock
        self._log = logger
        self._sender = sender_type(params.tag_prefix, host=host, port=port, bufmax=params.buffer_bytes,
                                    timeout=params.push_timeout.total_seconds(),
                                    nanosecond_precision=params.sub_second_precision,
                                    buffer_overflow_handler=self._overflowed)
        self._buffer: list[tuple[str, Any, dict[str, Any]]] = []
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fluentd")
        self._pushing = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False
        self.dropped = 0
        self.sent = 0

    # --- events -------------------------------------------------------------------

    def _event(self, instance: LogEntry) -> tuple[str, Any, dict[str, Any]]:
        integer = self.params.integer_duration
        record = {str(k): _value(v, integer) for k, v in instance.variables.items()}
        record["severity"] = instance.severity
        tag = record.pop("tag", None)
        if tag is None:
            tag = instance.name
        else:
            record["name"] = instance.name
        stamp = instance.timestamp
        if stamp is not None and stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.timezone.utc)  # a naive time is UTC, as elsewhere
        when = stamp.timestamp() if stamp is not None else self._clock.now()
        return str(tag), (when if self.params.sub_second_precision else int(when)), record

    # --- pushing --------------------------------------------------------------------

    async def start(self) -> None:
        """Start the timer that pushes waiting events every ``pushInterval``."""
        self._timer = asyncio.get_running_loop().create_task(self._every_interval(), name="fluentd-push")

    async def _every_interval(self) -> None:
        interval = self.params.push_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._push()
            except AdapterError as exc:
                self._log.error("fluentd push: %s", exc.message)

    async def report(self, instances: Sequence[Any]) -> None:
        """Buffer one event per log entry; push when ``batchSize`` wait (raises AdapterError on drops)."""
        if self._closed:
            raise RuntimeError("fluentd handler is closed; the batch was not sent")
        room = self.params.instance_buffer_size - len(self._buffer)
        events = [self._event(i) for i in instances if isinstance(i, LogEntry)]
        if len(events) < len(instances):
            raise TypeError("fluentd handles logentry instances only")
        lost = max(0, len(events) - room)
        self._buffer.extend(events[:len(events) - lost])
        if lost:
            self.dropped += lost
        if len(self._buffer) >= self.params.batch_size or self._timer is None:
            await self._push()
        if lost:
            raise AdapterError(Code.RESOURCE_EXHAUSTED, f"{lost} event(s) dropped: {len(self._buffer)} already"
                                                        f" wait for fluentd at {self.params.address}")

    async def _push(self) -> None:
        async with self._pushing:
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            dropped_before = self.dropped
            unsent = await asyncio.get_running_loop().run_in_executor(self._worker, self._send, batch)
            if unsent:
                # Keep them for the next push, ahead of what arrived meanwhile (as room allows).
                keep = max(0, self.params.instance_buffer_size - len(self._buffer))
                self.dropped += max(0, len(unsent) - keep)
                self._buffer[:0] = unsent[:keep]
            if self.dropped > dropped_before:
                raise AdapterError(Code.UNAVAILABLE, f"fluentd at {self.params.address}:"
                                                     f" {self.dropped - dropped_before} event(s) dropped")

    def _send(self, batch: list[tuple[str, Any, dict[str, Any]]]) -> list[tuple[str, Any, dict[str, Any]]]:
        """Emit events in order (worker thread); returns those not attempted after the first failure."""
        sender = self._sender
        for index, (tag, when, record) in enumerate(batch):
            if not sender.emit_with_time(tag, when, record):
                # fluent-logger keeps this one in its buffer and resends it first next time.
                if not self._failing:
                    self._log.warning("fluentd at %s unreachable: %s; %d event(s) wait for the next push",
                                      self.params.address, sender.last_error, len(batch) - index)
                self._failing = True
                sender.clear_last_error()
                return batch[index + 1:]
            self.sent += 1
        self._failing = False
        return []

    def _overflowed(self, pending: bytes) -> None:
        """fluent-logger's buffer outgrew ``bufferBytes``: count the events it held (worker thread)."""
        import msgpack

        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(pending)
        count = sum(1 for _ in unpacker)
        self.dropped += count
        self._log.error("fluentd at %s unreachable: %d buffered event(s) (%d bytes) dropped",
                        self.params.address, count, len(pending))

    async def close(self) -> None:
        """Push what waits, close the connection (resending fluent-logger's buffer), stop the worker."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        try:
            await self._push()
        except AdapterError as exc:
            self._log.error("fluentd close: %s", exc.message)
        if self._buffer:
            self.dropped += len(self._buffer)
            self._log.error("fluentd at %s unreachable at close: %d event(s) dropped",
                            self.params.address, len(self._buffer))
            self._buffer = []
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._sender.close)
        self._worker.shutdown(wait=False)


class Fluentd(Adapter[FluentdParams]):
    """Sends log entries to a fluentd daemon over the forward protocol."""

    name = "fluentd"
    description = "Sends log entries to a fluentd daemon over the forward protocol"
    templates = ("logentry",)
    Params = FluentdParams

    @classmethod
    def validate(cls, params: FluentdParams) -> Iterator[FieldError]:
        """Address well formed; sizes and durations positive."""
        try:
            _host_port(params.address)
        except ValueError as exc:
            yield FieldError("address", str(exc))
        for key, value in (("instanceBufferSize", params.instance_buffer_size), ("batchSize", params.batch_size),
                           ("bufferBytes", params.buffer_bytes)):
            if value <= 0:
                yield FieldError(key, f"must be > 0, got {value}")
        for key, duration in (("pushInterval", params.push_interval), ("pushTimeout", params.push_timeout)):
            if duration.total_seconds() <= 0:
                yield FieldError(key, "must be longer than 0s")

    @classmethod
    def build(cls, params: FluentdParams, context: BuildContext) -> FluentdHandler:
        """Make the sender (it connects on the first push, not here)."""
        try:
            from fluent import sender
        except ImportError as exc:
            raise RuntimeError("the fluentd adapter needs fluent-logger: pip install 'sidecar-policy[fluentd]'") from exc
        return FluentdHandler(params, context.clock, context.logger, sender.FluentSender)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the ``fluentd`` adapter."""
    registry.add(Fluentd)


__all__ = ["Fluentd", "FluentdHandler", "FluentdParams", "policy_register_adapters"]
