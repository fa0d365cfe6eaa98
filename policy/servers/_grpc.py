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


def unary_handlers(
    service: str,
    methods: Mapping[str, tuple[Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]], type[Message] | None]],
) -> grpc.GenericRpcHandler:
    """A generic handler for ``service`` whose unary methods receive raw request bytes.

    :param methods: method name → (coroutine taking (bytes, context), response message
        type; None when the coroutine returns already serialized bytes).
    """
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=None,
            response_serializer=response_type.SerializeToString if response_type else None)
        for name, (fn, response_type) in methods.items()
    }
    return grpc.method_handlers_generic_handler(service, handlers)
