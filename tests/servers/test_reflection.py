"""Server reflection answers on v1 (what grpcurl asks for first) and on v1alpha, over a real socket."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

CONFIG = """
handlers:
  - {name: deny, adapter: denier}
instances:
  - {name: nothing, template: checknothing}
rules:
  - {name: deny-all, actions: [{handler: deny, instances: [nothing]}]}
"""


@pytest.fixture
async def server(policy_config, policy_server_factory):
    return await policy_server_factory(policy_config(CONFIG))


async def _ask(server, version: str, request: reflection_pb2.ServerReflectionRequest):
    call = server.channel().stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )

    async def requests():
        yield request

    async for response in call(requests()):
        return response
    raise AssertionError("no reflection response")


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_lists_services_on_both_versions(server, version):
    response = await _ask(server, version, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in response.list_services_response.service}
    assert {"policy.v1.Policy", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= names


@pytest.mark.parametrize("symbol, package", [("policy.v1.Policy", "policy.v1"),
                                             ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1")])
async def test_v1_describes_symbols(server, symbol, package):
    response = await _ask(server, "v1", reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol))
    assert not response.HasField("error_response"), response.error_response
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for raw in response.file_descriptor_response.file_descriptor_proto]
    assert package in {f.package for f in files}
    assert symbol.rsplit(".", 1)[1] in {s.name for f in files for s in f.service}
