"""Real receivers for the report tests: a UDP statsd listener, a fluentd forward server, a scraper.

Each listens on 127.0.0.1 only and parses what arrives with its protocol's own
rules (statsd lines, msgpack forward messages, Prometheus text), so a test fails
when what the adapter puts on the wire is wrong.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
from prometheus_client.parser import text_string_to_metric_families


#: The longest a test waits for something that must happen (a bound against hangs, not a
#: synchronisation: every wait below ends as soon as what it waits for has arrived).
PATIENCE = 60.0


class Arrivals:
    """Something that receives (datagrams, events): tests wait on its arrivals, not on the clock."""

    def __init__(self) -> None:
        self._arrived = asyncio.Event()

    def arrived(self) -> None:
        """Called on the event loop for every arrival: wakes the waiters."""
        self._arrived.set()

    async def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
        """Return once ``predicate`` holds, re-checking it after each arrival; AssertionError on the bound."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            self._arrived.clear()
            if predicate():
                return
            try:
                await asyncio.wait_for(self._arrived.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise AssertionError(f"nothing more arrived in {timeout}s while waiting for {what}") from None


async def wait_until(predicate: Callable[[], bool], timeout: float = PATIENCE, what: str = "condition") -> None:
    """Poll ``predicate`` (for state with no arrival to wait on) every 10 ms; AssertionError on the bound."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def refusing_address() -> tuple[socket.socket, str]:
    """A loopback TCP address that refuses connections, reserved for the caller.

    The socket is bound but not listening, so a connection is refused (as to a server
    that is down) and no other process can take the port; :meth:`ForwardReceiver.start`
    can later listen on the same socket, as the server coming up.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, f"127.0.0.1:{sock.getsockname()[1]}"


# --- Prometheus ----------------------------------------------------------------------


def scrape_text(address: str, path: str = "/metrics") -> str:
    """GET the metrics endpoint over HTTP (blocking; call through asyncio.to_thread)."""
    with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "text/plain"
        return response.read().decode("utf-8")


@dataclass
class Scrape:
    """One parsed scrape: samples by (name, frozen labels), and the families by name."""

    families: dict[str, Any]
    samples: dict[tuple[str, frozenset], float]

    def value(self, name: str, **labels: str) -> float | None:
        """The sample called ``name`` with exactly ``labels``, or None."""
        return self.samples.get((name, frozenset(labels.items())))

    def with_name(self, name: str) -> dict[frozenset, float]:
        """Every sample called ``name``, by label set."""
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


async def scrape(address: str) -> Scrape:
    """Scrape ``address`` over HTTP and parse it with prometheus-client's parser."""
    text = await asyncio.to_thread(scrape_text, address)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {}
    for family in families.values():
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(families, samples)


# --- statsd over UDP -------------------------------------------------------------------


@dataclass
class StatsdLine:
    """One parsed statsd / dogstatsd line: ``name:value|type[|@rate][|#tags]``."""

    name: str
    value: str
    type: str
    rate: float | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, line: str) -> "StatsdLine":
        """Parse one line; AssertionError when it breaks the format."""
        head, _, rest = line.partition("|")
        name, sep, value = head.rpartition(":")
        assert sep and name and value, f"not a statsd line: {line!r}"
        parts = rest.split("|")
        kind = parts[0]
        assert kind in ("c", "g", "ms", "h", "d", "s"), f"unknown statsd type in {line!r}"
        out = cls(name, value, kind)
        for part in parts[1:]:
            if part.startswith("@"):
                out.rate = float(part[1:])
            elif part.startswith("#"):
                for tag in part[1:].split(","):
                    key, _, val = tag.partition(":")
                    out.tags[key] = val
            else:
                raise AssertionError(f"unexpected field {part!r} in {line!r}")
        return out


class StatsdListener(asyncio.DatagramProtocol, Arrivals):
    """A UDP socket on 127.0.0.1 keeping every datagram and every line in it."""

    def __init__(self) -> None:
        Arrivals.__init__(self)
        self.packets: list[bytes] = []
        self.lines: list[StatsdLine] = []
        self.transport: Any = None
        self.port = 0

    def connection_made(self, transport: Any) -> None:  # noqa: D401 - protocol callback
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: Any) -> None:  # noqa: D401 - protocol callback
        self.packets.append(data)
        self.lines.extend(StatsdLine.parse(line) for line in data.decode("utf-8").split("\n") if line)
        self.arrived()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        """Close the socket."""
        self.transport.close()


async def start_statsd_listener() -> StatsdListener:
    """A listening :class:`StatsdListener` on a free loopback port."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(StatsdListener, local_addr=("127.0.0.1", 0))
    return protocol


# --- fluentd forward protocol ----------------------------------------------------------


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:  # EventTime: seconds and nanoseconds, big-endian
        seconds, nanos = struct.unpack(">II", data)
        return seconds + nanos / 1e9
    return msgpack.ExtType(code, data)


@dataclass
class ForwardEvent:
    """One event received: tag, time (seconds, float for EventTime), record."""

    tag: str
    time: float
    record: dict[str, Any]
    event_time: bool = False


class ForwardReceiver(Arrivals):
    """A fluentd forward-protocol server on 127.0.0.1: Message, Forward and PackedForward modes."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[ForwardEvent] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, sock: socket.socket | None = None) -> "ForwardReceiver":
        """Listen on a free loopback port, or on ``sock`` (bound already, see :func:`refusing_address`)."""
        if sock is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        else:
            self._server = await asyncio.start_server(self._serve, sock=sock)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        unpacker = msgpack.Unpacker(raw=False, ext_hook=_ext_hook, strict_map_key=False)
        try:
            while data := await reader.read(65536):
                unpacker.feed(data)
                for message in unpacker:
                    self._message(message)
        finally:
            writer.close()

    def _message(self, message: Any) -> None:
        assert isinstance(message, list) and len(message) >= 2, f"not a forward message: {message!r}"
        tag, second = message[0], message[1]
        if isinstance(second, list):  # Forward mode: [tag, [[time, record], ...], option?]
            for entry_time, record in second:
                self._add(tag, entry_time, record)
        elif isinstance(second, (bytes, bytearray)):  # PackedForward mode
            for entry_time, record in msgpack.Unpacker(raw=False, ext_hook=_ext_hook):
                self._add(tag, entry_time, record)
        else:  # Message mode: [tag, time, record, option?]
            self._add(tag, second, message[2])

    def _add(self, tag: str, entry_time: Any, record: Any) -> None:
        assert isinstance(tag, str) and isinstance(record, dict), (tag, record)
        self.events.append(ForwardEvent(tag, float(entry_time), record, isinstance(entry_time, float)))
        self.arrived()

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
