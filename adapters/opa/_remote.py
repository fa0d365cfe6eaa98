"""A remote OPA server, asked through ``opa-python-client``'s asynchronous client.

One ``POST /v1/data/<decision path>`` with ``{"input": ...}`` per check (OPA's Data
API); the answer's ``result`` is the decision, a missing ``result`` means undefined.
The client is created on the first check (it needs the running event loop) and its
own retries are turned off: the handler's timeout bounds the whole call and a retry
would only make a slow server slower.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from opa_client.opa_async import AsyncOpaClient


class RemoteError(RuntimeError):
    """The server could not be asked or did not answer well; ``timeout`` tells which."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


def url_error(url: str) -> str | None:
    """What is wrong with an OPA server URL, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"expected an http:// or https:// URL, got {url!r}"
    if not parts.hostname:
        return f"{url!r} has no host"
    if parts.path not in ("", "/"):
        return f"{url!r}: give the server's address only (the decision path is a separate param)"
    return None


class RemoteOpa:
    """Asks one OPA server for decisions."""

    def __init__(self, url: str, decision: str, timeout: float, token: str = "") -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.decision = decision.strip("/")
        self.timeout = timeout
        self._settings = dict(host=parts.hostname or "127.0.0.1",
                              port=parts.port or (443 if parts.scheme == "https" else 80),
                              ssl=parts.scheme == "https", token=token or None, retries=0, timeout=timeout)
        self._client: AsyncOpaClient | None = None

    async def _connected(self) -> AsyncOpaClient:
        if self._client is None:
            client = AsyncOpaClient(**self._settings)
            await client._init_session()  # the public way is ``async with``, for one-shot use
            self._client = client
        return self._client

    async def decide(self, document: Any) -> tuple[bool, Any]:
        """(defined, decision) for one input; raise RemoteError when the server fails or is slow."""
        try:
            client = await self._connected()
            package, _, rule = self.decision.rpartition("/")
            query = client.query_rule(document, package, rule) if package else client.query_rule(document, rule)
            answer = await asyncio.wait_for(query, self.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise RemoteError(f"OPA at {self.url} did not answer within {self.timeout:g}s", timeout=True) from None
        except Exception as exc:  # aiohttp errors, HTTP status errors, bad JSON
            raise RemoteError(f"OPA at {self.url} failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(answer, dict):
            raise RemoteError(f"OPA at {self.url} answered {type(answer).__name__}, not a JSON object")
        if "result" not in answer:
            return False, None
        return True, answer["result"]

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._client is not None:
            await self._client.close_connection()
            self._client = None


__all__ = ["RemoteError", "RemoteOpa", "url_error"]
