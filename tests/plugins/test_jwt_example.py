"""The example third-party adapter (examples/adapter-plugin): installed, tested, served."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from policy.servers.app import API_MODULES
from policy.testing import ext_authz_request, native_check
from policy.v1 import policy_pb2_grpc
from tests.plugins.conftest import run


def test_example_tests_pass_against_the_installed_package(installed):
    result = run(sys.executable, "-m", "pytest", "-q", cwd=installed.jwt)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "7 passed" in result.stdout, result.stdout[-1500:]


def test_serve_the_example_config_with_fresh_keys(installed, serve, tmp_path):
    config = shutil.copytree(installed.jwt / "example", tmp_path / "config", ignore=shutil.ignore_patterns("*.py"))
    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    (config / "jwks.json").write_text(json.dumps({"keys": [{**public, "kid": "k1", "alg": "ES256"}]}))
    now = int(time.time())
    token = jwt.encode({"iss": "https://issuer.example", "aud": "books-api", "sub": "ann", "exp": now + 60},
                       key, algorithm="ES256", headers={"kid": "k1"})
    expired = jwt.encode({"iss": "https://issuer.example", "aud": "books-api", "exp": now - 3600},
                         key, algorithm="ES256", headers={"kid": "k1"})
    served = serve(config / "policy.yaml")

    async def ask() -> dict:
        async with grpc.aio.insecure_channel(served.address) as channel:
            stub = policy_pb2_grpc.PolicyStub(channel)
            out = {}
            for label, header in (("valid", f"Bearer {token}"), ("expired", f"Bearer {expired}"), ("none", None)):
                attrs = {"request.headers": {"authorization": header}} if header else {}
                response = await native_check(stub, attrs)
                out[label] = response.precondition
            if "policy.servers.ext_authz" in API_MODULES:
                out["ext_authz"] = await stub_ext_authz(channel)
            return out

    async def stub_ext_authz(channel):
        from envoy.service.auth.v3 import external_auth_pb2_grpc

        return await external_auth_pb2_grpc.AuthorizationStub(channel).Check(ext_authz_request(path="/books"))

    answers = asyncio.run(ask())
    valid = answers["valid"]
    assert valid.status.code == 0
    assert 0 < valid.valid_duration.seconds <= 60  # cacheable until the token expires at most
    assert [(h.name, h.value) for h in valid.route_directive.request_header_operations] == [("x-jwt-subject", "ann")]
    assert answers["expired"].status.code == 16 and "token expired at" in answers["expired"].status.message
    assert answers["none"].status.message == "jwt-auth: missing bearer token"
    if "ext_authz" in answers:
        assert answers["ext_authz"].denied_response.status.code == 401
