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

from policy.servers._intercept import MethodRouter


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


#: Routers given to bare grpc.aio servers (a PolicyServer's registrars see its own, through RegisteringServer).
_routers: weakref.WeakKeyDictionary[Any, MethodRouter] = weakref.WeakKeyDictionary()


def add_unary_handlers(server: grpc.aio.Server, service: str, methods: Methods) -> None:
    """Register unary methods of ``service`` on ``server``; each receives the raw request bytes.

    :param methods: method name → (coroutine taking (bytes, context), response message
        type; None when the coroutine returns already serialized bytes).

    All the methods added to one server go into one :class:`~policy.servers._intercept.MethodRouter`,
    the server's first generic handler: a call finds its method with one dict lookup, whichever API it is
    for. They are not added as grpc's *registered* methods: measured with callgrind under
    h2load load (benchmarks/profiles/README.md), grpc.aio's registered-method path costs
    about 24,000 more instructions per call (~5% of a cached check) than this lookup.
    """
    router = getattr(server, "method_router", None)  # a PolicyServer's, through RegisteringServer
    if router is None:  # a bare grpc.aio server: a router of its own, registered once
        router = _routers.get(server)
        if router is None:
            router = _routers[server] = MethodRouter()
            server.add_generic_rpc_handlers((router,))
    for name, handler in _method_handlers(methods).items():
        router.add(f"/{service}/{name}", handler)
