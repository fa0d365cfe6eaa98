"""gRPC plumbing shared by the servers: raw-bytes handlers so undecodable requests are answered.

grpc's generated registration decodes requests before our code runs, and a
corrupt message then ends as UNKNOWN with a stack trace in the log. Our handlers
take the bytes and decode them themselves, answering INVALID_ARGUMENT instead.
"""

from __future__ import annotations

import weakref
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


class _MethodTable(grpc.GenericRpcHandler):
    """Every unary method our APIs add to one server, found with one dict lookup per call."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """The handler of the called method (None: not ours; the server's next handler is asked)."""
        return self.handlers.get(handler_call_details.method)


_tables: weakref.WeakKeyDictionary[Any, _MethodTable] = weakref.WeakKeyDictionary()


def add_unary_handlers(server: grpc.aio.Server, service: str, methods: Methods) -> None:
    """Register unary methods of ``service`` on ``server``; each receives the raw request bytes.

    :param methods: method name → (coroutine taking (bytes, context), response message
        type; None when the coroutine returns already serialized bytes).

    All the methods added to one server go into one table, registered once as the server's
    first generic handler: a call finds its method with one dict lookup, whichever API it is
    for. They are not added as grpc's *registered* methods: measured with callgrind under
    h2load load (benchmarks/profiles/README.md), grpc.aio's registered-method path costs
    about 24,000 more instructions per call (~5% of a cached check) than this lookup.
    """
    router = getattr(server, "method_router", None)  # policy.servers._intercept.RegisteringServer
    if router is not None:
        for name, handler in _method_handlers(methods).items():
            router.add(f"/{service}/{name}", handler)
        return
    table = _tables.get(server)
    if table is None:
        table = _tables[server] = _MethodTable()
        server.add_generic_rpc_handlers((table,))
    for name, handler in _method_handlers(methods).items():
        table.handlers[f"/{service}/{name}"] = handler
