"""The jwt adapter through sidecar-policy's test kit: conformance, a real server, ext_authz, caching."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from typing import Any

import policy_jwt as plugin
from policy import Code
from policy.testing import (
    ConfigFactory,
    HostFactory,
    Scenario,
    ServerFactory,
    ServiceFactory,
    assert_scenarios,
    check_adapter_conformance,
    ext_authz_request,
    served_apis,
)
from policy_jwt import BearerToken, Jwt

from .conftest import AUDIENCE, ISSUER, Keys, config_text


def bearer(token: str) -> dict[str, Any]:
    """Attributes of a request carrying ``token``."""
    return {"request.headers": {"authorization": f"Bearer {token}"}}


async def test_conformance(keys: Keys) -> None:
    await check_adapter_conformance(
        Jwt,
        valid_params=[{"jwksPath": keys.jwks_path.name, "issuer": ISSUER, "audiences": [AUDIENCE]},
                      {"jwksPath": str(keys.jwks_path), "algorithms": ["ES256"], "maxValidDuration": "10s"}],
        invalid_params=[{}, {"jwksPath": "x", "algorithms": ["HS256"]}, {"jwksPath": "x", "leeway": "soon"},
                        {"jwksPath": "x", "maxValidDuration": "0s"}],
        plugins=[plugin],
        instances={"bearertoken": BearerToken("token", f"Bearer {keys.token()}")},
        config_dir=keys.jwks_path.parent,
    )


async def test_decisions_through_a_real_server(
    policy_config: ConfigFactory, policy_server_factory: ServerFactory, keys: Keys,
) -> None:
    server = await policy_server_factory(policy_config(config_text(keys.jwks_path)), plugin)
    now = int(time.time())
    await assert_scenarios(server, [
        Scenario(bearer(keys.token("rsa-1")), "OK", name="RS256"),
        Scenario(bearer(keys.token("ec-1")), "OK", name="ES256"),
        Scenario({}, Code.UNAUTHENTICATED, message="missing bearer token", name="no header"),
        ({"request.headers": {"authorization": "Basic YWxpY2U6cHc="}}, "UNAUTHENTICATED", "not a bearer token"),
        (bearer("not.a.token"), "UNAUTHENTICATED", "malformed token"),
        (bearer(keys.token(exp=now - 120)), "UNAUTHENTICATED", "token expired at"),
        (bearer(keys.token(exp=None)), "UNAUTHENTICATED", "token has no expiry"),
        (bearer(keys.token(nbf=now + 600)), "UNAUTHENTICATED", "token not valid before"),
        (bearer(keys.token(iss="https://evil.example")), "UNAUTHENTICATED", "invalid issuer"),
        (bearer(keys.token(aud="other-api")), "UNAUTHENTICATED", "invalid audience"),
        (bearer(keys.token("rsa-rogue", header_kid="rsa-1")), "UNAUTHENTICATED", "invalid signature"),
        (bearer(keys.token("rsa-rogue")), "UNAUTHENTICATED", "unknown signing key 'rsa-rogue'"),
        (bearer(keys.token("rsa-1", alg="RS512")), "UNAUTHENTICATED", "token algorithm 'RS512' is not accepted"),
        (bearer(keys.token("rsa-1", header_kid=None)), "UNAUTHENTICATED", "token names no signing key"),
    ])


async def test_shared_secret_tokens_are_refused(
    policy_config: ConfigFactory, policy_service_factory: ServiceFactory, keys: Keys,
) -> None:
    service = await policy_service_factory(policy_config(config_text(keys.jwks_path)), plugin)
    forged = json.dumps({"kid": "rsa-1"})  # an HS256 token "signed" with the public key is the classic attack
    import jwt

    token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}, "secret-key-of-32-bytes-or-more!!",
                       algorithm="HS256", headers=json.loads(forged))
    decision = await service.check(bearer(token))
    assert decision.code == Code.UNAUTHENTICATED and "'HS256' is not accepted" in decision.message


async def test_allowed_decisions_are_cacheable_until_expiry_at_most(
    policy_config: ConfigFactory, policy_service_factory: ServiceFactory, keys: Keys,
) -> None:
    service = await policy_service_factory(policy_config(config_text(keys.jwks_path, maxValidDuration="120s")), plugin)
    soon = await service.check(bearer(keys.token(exp=int(time.time()) + 40)))
    assert soon.allowed and 35 <= soon.valid_duration <= 40
    later = await service.check(bearer(keys.token(exp=int(time.time()) + 3600)))
    assert later.valid_duration == 120
    missing = await service.check({})
    assert missing.valid_duration == 120
    ops = {(h.name, h.value) for h in later.request_headers}
    assert ("x-jwt-subject", "alice") in ops
    other = await service.check(bearer(keys.token(exp=int(time.time()) + 40, sub="carol")))
    assert not other.cache_hit  # another token is another cache key
    repeat_token = keys.token(exp=int(time.time()) + 3600, sub="bob")
    first = await service.check({**bearer(repeat_token), "request.id": "1"})
    second = await service.check({**bearer(repeat_token), "request.id": "2"})
    assert not first.cache_hit and second.cache_hit


async def test_ext_authz_answers_401_with_the_reason(
    policy_config: ConfigFactory, policy_server_factory: ServerFactory, keys: Keys,
) -> None:
    server = await policy_server_factory(policy_config(config_text(keys.jwks_path)), plugin)
    if "ext_authz" not in served_apis():
        pytest.skip("this sidecar-policy serves no ext_authz API")
    stub = server.ext_authz()
    denied = await stub.Check(ext_authz_request(path="/books"))
    assert denied.status.code == Code.UNAUTHENTICATED
    assert denied.denied_response.status.code == 401
    assert "missing bearer token" in denied.status.message
    allowed = await stub.Check(ext_authz_request(headers={"authorization": f"Bearer {keys.token('ec-1')}"}))
    assert allowed.status.code == 0


async def test_bad_jwks_fails_the_config_load_naming_the_param(
    policy_config: ConfigFactory, policy_service_factory: ServiceFactory, tmp_path: Path,
) -> None:
    from policy import ConfigError

    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": []}')
    with pytest.raises(ConfigError, match="jwksPath"):
        await policy_service_factory(policy_config(config_text(bad)), plugin)
    with pytest.raises(ConfigError, match=r"params.jwksPath: .*cannot read .*missing.json"):
        await policy_service_factory(policy_config(config_text(tmp_path / "missing.json")), plugin)


def test_installed_plugin_is_found_by_its_entry_point(policy_host_factory: HostFactory) -> None:
    registered = policy_host_factory(autoload=True).adapters.get("jwt")
    assert registered is not None, "pip install -e examples/adapter-plugin first"
    assert registered.origin.distribution == "policy-adapter-jwt"
    assert "bearertoken" in policy_host_factory(autoload=True).templates
