"""Fixtures for the built-in adapter tests: building through the SDK, a fake clock, a list server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from policy.testing import FakeClock

from policy import BuildContext, Clock, Handler, parse_params


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fake clock starting at a fixed time."""
    return FakeClock()


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Build a handler the way the host does: parse params, validate, build with a BuildContext.

    Every handler built is closed when the test ends (closing twice is harmless).
    """
    built: list[Handler] = []

    def _build(adapter: Any, raw: dict[str, Any] | None = None, clock: Clock | None = None) -> Handler:
        params = parse_params(adapter.Params, raw or {})
        errors = list(adapter.validate(params))
        assert errors == [], errors
        context = BuildContext(handler="h", config_dir=tmp_path, clock=clock or Clock())
        handler = adapter.build(params, context)
        built.append(handler)
        return handler

    yield _build
    for handler in built:
        await handler.close()


@dataclass
class ListServer:
    """What the loopback list server answers, and how often it was asked."""

    url: str = ""
    body: bytes = b""
    status: int = 200
    hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def list_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ListServer]:
    """A real HTTP server on a free 127.0.0.1 port, serving ``ListServer.body`` with ``.status``."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    state = ListServer()

    class _Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            with state.lock:
                state.hits += 1
                status, body = state.status, state.body
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="list-server", daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/list.txt"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
