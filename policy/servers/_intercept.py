"""The server's one interceptor: counts calls picked up, and answers undecodable requests to library services.

Our own APIs take raw bytes and decode them (:mod:`policy.servers._grpc`). Services
registered by libraries (health, reflection) decode in grpc before their code
runs, so a corrupt message ended as UNKNOWN with a stack trace in the log; the
interceptor gives those methods the same treatment: INVALID_ARGUMENT, one line.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from policy.logs import clip

_DRAIN_SECONDS = 1.0  # at most this long reading the rest of a stream with a corrupt message


async def _parse(deserialize: Callable[[bytes], Any], data: bytes, context: grpc.aio.ServicerContext) -> Any:
    try:
        return deserialize(data)
    except Exception as exc:  # DecodeError, bad UTF-8, anything the parser raises
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request is not a valid message: {clip(exc)}")


async def abort_after_draining(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext,
                               code: grpc.StatusCode, details: str) -> None:
    """End a client stream with ``code``, after reading what the client still sends (for a moment).

    Ending the call while the client writes makes its side report INTERNAL ("Internal error
    from Core") instead of our answer; a stream that goes on sending (Envoy's access-log
    stream) is answered after :data:`_DRAIN_SECONDS` all the same.
    """
    try:
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for _ in requests:
                pass
    except TimeoutError:
        pass
    await context.abort(code, details)


def _decoded(deserialize: Callable[[bytes], Any], requests: AsyncIterator[bytes],
             context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
    async def parsed() -> AsyncIterator[Any]:
        async for data in requests:
            try:
                request = deserialize(data)
            except Exception as exc:
                await abort_after_draining(requests, context, grpc.StatusCode.INVALID_ARGUMENT,
                                           f"request is not a valid message: {clip(exc)}")
            yield request

    return parsed()


def decoding_in_python(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` taking raw bytes and decoding them itself (INVALID_ARGUMENT when they do not parse)."""
    deserialize = handler.request_deserializer
    serialize = handler.response_serializer
    if handler.unary_unary is not None:
        original = handler.unary_unary

        async def unary_unary(data: bytes, context: grpc.aio.ServicerContext) -> Any:
            return await original(await _parse(deserialize, data, context), context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, None, serialize)
    if handler.unary_stream is not None:
        original = handler.unary_stream
        if inspect.isasyncgenfunction(original):
            async def unary_stream_gen(data: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async for reply in original(await _parse(deserialize, data, context), context):
                    yield reply

            return grpc.unary_stream_rpc_method_handler(unary_stream_gen, None, serialize)

        async def unary_stream(data: bytes, context: grpc.aio.ServicerContext) -> Any:
            return await original(await _parse(deserialize, data, context), context)

        return grpc.unary_stream_rpc_method_handler(unary_stream, None, serialize)
    if handler.stream_stream is not None:
        original = handler.stream_stream
        if inspect.isasyncgenfunction(original):
            async def stream_stream_gen(requests: AsyncIterator[bytes],
                                        context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async for reply in original(_decoded(deserialize, requests, context), context):
                    yield reply

            return grpc.stream_stream_rpc_method_handler(stream_stream_gen, None, serialize)

        async def stream_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
            return await original(_decoded(deserialize, requests, context), context)

        return grpc.stream_stream_rpc_method_handler(stream_stream, None, serialize)
    original = handler.stream_unary

    async def stream_unary(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
        return await original(_decoded(deserialize, requests, context), context)

    return grpc.stream_unary_rpc_method_handler(stream_unary, None, serialize)


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Counts calls picked up (``started``) and makes library methods decode in Python (see the module)."""

    def __init__(self) -> None:
        self.started = 0
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        """Count the call; hand on its handler (wrapped once per method when grpc would decode it)."""
        self.started += 1
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped[method] = decoding_in_python(handler)
        return wrapped
