"""Fixtures for the opa tests: configs with an opa handler, HS256 tokens, an OPA Data API server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from adapters.opa._engine import PolicySource, to_native

HEAD = """
handlers:
  - name: opa
    adapter: opa
    params:
{params}
instances:
  - {{name: request, template: requestcontext, params: {{}}}}
rules:
  - name: opa
    actions: [{{handler: opa, instances: [request]}}]
"""


def opa_config(params: str) -> str:
    """A config whose opa handler has ``params`` (YAML, any indentation) and a requestcontext instance."""
    body = textwrap.indent(textwrap.dedent(params).strip("\n"), " " * 6)
    return HEAD.format(params=body)


def inline(policy: str) -> str:
    """Params with one inline module."""
    return "policies:\n  - |\n" + textwrap.indent(textwrap.dedent(policy).strip("\n"), "    ")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(payload: dict[str, Any], secret: str = "secret") -> str:
    """A signed HS256 JWT."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


class DataApi:
    """OPA's Data API (``POST /v1/data/<path>``) answered by the embedded engine, on 127.0.0.1.

    No OPA server binary can be installed here; this serves the same protocol from
    the same Rego so the remote client is exercised over real HTTP. ``delay`` slows
    every answer; ``status`` makes it fail.
    """

    def __init__(self, policy: str | PolicySource) -> None:
        self.source = policy if isinstance(policy, PolicySource) else PolicySource(inline=[textwrap.dedent(policy)])
        self.compiled: dict[str, Any] = {}
        self.delay = 0.0
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _data(self, request: web.Request) -> web.Response:
        path = request.match_info["path"].strip("/")
        body = await request.json()
        self.requests.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.json_response({"code": "internal_error", "message": "boom"}, status=self.status)
        compiled = self.compiled.get(path) or self.compiled.setdefault(path, self.source.compile(path))
        defined, value = compiled.evaluate(to_native(body.get("input")))
        return web.json_response({"result": value} if defined else {})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/data/{path:.*}", self._data)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()  # port 0: the port bound is read back
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def data_api() -> AsyncIterator[Callable[..., Any]]:
    """``await data_api(rego or PolicySource)`` → a started :class:`DataApi` on 127.0.0.1 (stopped after the test)."""
    started: list[DataApi] = []

    async def make(policy: str | PolicySource) -> DataApi:
        api = DataApi(policy)
        await api.start()
        started.append(api)
        return api

    yield make
    for api in started:
        await api.stop()


@pytest.fixture
def opa_service(policy_config: Callable[..., Any], policy_service_factory: Callable[..., Any]) -> Callable[..., Any]:
    """``await opa_service(params_yaml)`` → a started PolicyService with the opa handler."""

    async def make(params: str) -> Any:
        return await policy_service_factory(policy_config(opa_config(params)))

    return make


def message(decision: Any) -> str:
    """The opa handler's message (cache misses only)."""
    (call,) = decision.calls
    return call.result.status.message
