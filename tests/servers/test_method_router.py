"""API methods registered on a bare grpc.aio server go through one method router, as a PolicyServer's do."""

from __future__ import annotations

import grpc

from policy.servers._grpc import _routers, add_unary_handlers


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


async def _answer(data: bytes, context: object) -> bytes:
    return data


async def test_a_bare_server_gets_one_router_for_every_api():
    server = grpc.aio.server()
    added: list[object] = []
    original = server.add_generic_rpc_handlers
    server.add_generic_rpc_handlers = lambda handlers: (added.extend(handlers), original(handlers))  # type: ignore[method-assign]
    add_unary_handlers(server, "a.A", {"Check": (_answer, None)})
    add_unary_handlers(server, "b.B", {"Check": (_answer, None), "Other": (_answer, None)})
    router = _routers[server]
    assert added == [router]  # registered once, whatever the number of APIs
    assert {m for m in router.handlers} == {"/a.A/Check", "/b.B/Check", "/b.B/Other"}
    assert router.service(_Details("/b.B/Other")) is router.handlers["/b.B/Other"]
    assert router.service(_Details("/c.C/Missing")) is None
    assert router.started == 2
    await server.stop(None)
