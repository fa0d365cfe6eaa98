"""A no-op server on the same stack as ours (grpc.aio, uvloop when installed): the baseline.

``python -m benchmarks.noop_server --listen ADDR [--listen ADDR ...]`` answers
``policy.v1.Policy/Check``, ``envoy.service.auth.v3.Authorization/Check`` and
``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`` with a fixed OK
response of the same shape ours sends,
and does nothing else, so a ratio against it isolates our own work per request.
Other APIs register here too (see ``NOOP_REGISTRARS``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc


def _native(server: grpc.aio.Server) -> None:
    from google.protobuf import duration_pb2
    from google.rpc import status_pb2

    from policy.v1 import policy_pb2, policy_pb2_grpc

    response = policy_pb2.CheckResponse(
        precondition=policy_pb2.CheckResponse.PreconditionResult(
            status=status_pb2.Status(code=0), valid_duration=duration_pb2.Duration(seconds=60),
            valid_use_count=10000),
        decision_id="0-1")

    class Noop(policy_pb2_grpc.PolicyServicer):
        async def Check(self, request, context):  # noqa: N802 - gRPC method name
            return response

    policy_pb2_grpc.add_PolicyServicer_to_server(Noop(), server)


def _ext_authz(server: grpc.aio.Server) -> None:
    from envoy.config.core.v3 import base_pb2
    from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
    from google.protobuf import struct_pb2
    from google.rpc import status_pb2

    # The shape ours answers for an allowed request: one header and the decision id (a UUID).
    metadata = struct_pb2.Struct()
    metadata.update({"decision_id": "5f0c6a4e-3b1d-4c8e-9a2f-7d6e5b4a3c21"})
    response = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=0),
        ok_response=external_auth_pb2.OkHttpResponse(headers=[base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key="x-policy-checked", value="true"),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)]),
        dynamic_metadata=metadata)

    class Noop(external_auth_pb2_grpc.AuthorizationServicer):
        async def Check(self, request, context):  # noqa: N802 - gRPC method name
            return response

    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Noop(), server)


def _ratelimit(server: grpc.aio.Server) -> None:
    from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

    # The shape ours answers for one descriptor within its limit.
    response = rls_pb2.RateLimitResponse(overall_code=rls_pb2.RateLimitResponse.OK)
    status = response.statuses.add(code=rls_pb2.RateLimitResponse.OK, limit_remaining=999_999)
    status.current_limit.requests_per_unit, status.current_limit.unit = 1_000_000, rls_pb2.RateLimitResponse.RateLimit.HOUR
    status.duration_until_reset.seconds = 1800

    class Noop(rls_pb2_grpc.RateLimitServiceServicer):
        async def ShouldRateLimit(self, request, context):  # noqa: N802 - gRPC method name
            return response

    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(Noop(), server)


NOOP_REGISTRARS = [_native, _ext_authz, _ratelimit]


class _GenericHandlersOnly:
    """Lets generated ``add_*Servicer_to_server`` code register generic handlers only.

    grpc.aio's *registered* methods cost more per call than a generic handler's dict
    lookup (about 25,000 instructions, callgrind, benchmarks/profiles/README.md); our
    server uses the cheaper path, so the floor it is compared with does too.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """Pass generic handlers through."""
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: object) -> None:
        """Skipped: the generic handler added beside them serves the same methods."""


async def serve(listen: list[str]) -> None:
    """Serve the no-op APIs until SIGTERM."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    for register in NOOP_REGISTRARS:
        register(_GenericHandlersOnly(server))  # type: ignore[arg-type]
    for address in listen:
        server.add_insecure_port(address)
    await server.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", action="append", required=True)
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(serve(args.listen))


if __name__ == "__main__":
    main()
