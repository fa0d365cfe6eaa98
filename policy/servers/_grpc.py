"""gRPC plumbing shared by the servers: raw-bytes handlers so undecodable requests are answered.

grpc's generated registration decodes requests before our code runs, and a
corrupt message then ends as UNKNOWN with a stack trace in the log. Our handlers
take the bytes and decode them themselves, answering INVALID_ARGUMENT instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message


async def decode(message_type: type[Message], data: bytes, context: grpc.aio.ServicerContext) -> Any:
    """Parse ``data`` as ``message_type``; abort with INVALID_ARGUMENT when it is not one."""
    try:
        return message_type.FromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"request is not a valid {message_type.DESCRIPTOR.full_name}: {exc}")


Methods = Mapping[str, tuple[Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]], "type[Message] | None"]]


def _method_handlers(methods: Methods) -> dict[str, grpc.RpcMethodHandler]:
    return {
        name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=None,
            response_serializer=response_type.SerializeToString if response_type else None)
        for name, (fn, response_type) in methods.items()
    }


def add_unary_handlers(server: grpc.aio.Server, service: str, methods: Methods) -> None:
    """Register unary methods of ``service`` on ``server``; each receives the raw request bytes.

    :param methods: method name → (coroutine taking (bytes, context), response message
        type; None when the coroutine returns already serialized bytes).

    Like generated code, the methods are also added as *registered* methods, which
    grpc's core matches without a per-call lookup in Python.
    """
    handlers = _method_handlers(methods)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)
