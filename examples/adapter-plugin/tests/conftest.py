"""Test keys made on the fly with ``cryptography``: an RSA and an EC key in a JWKS file, and a token minter."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://issuer.example"
AUDIENCE = "books-api"


@dataclass
class Keys:
    """Private keys by kid, the JWKS file of their public halves, and a token minter."""

    private: dict[str, Any]
    jwks_path: Path

    def token(self, kid: str = "rsa-1", alg: str | None = None, header_kid: str | None = "same", **claims: Any) -> str:
        """A token signed by key ``kid`` with default iss/aud/sub/exp claims, overridable by keyword."""
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        alg = alg or ("RS256" if kid.startswith("rsa") else "ES256")
        headers = {"kid": kid if header_kid == "same" else header_kid} if header_kid else {}
        return jwt.encode(body, self.private[kid], algorithm=alg, headers=headers or None)


def _jwk(kid: str, key: Any, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if alg.startswith("RS") else jwt.algorithms.ECAlgorithm
    public = json.loads(algorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """An RSA (``rsa-1``, RS256) and an EC P-256 (``ec-1``, ES256) key, published in ``jwks.json``."""
    private = {
        "rsa-1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec-1": ec.generate_private_key(ec.SECP256R1()),
        "rsa-rogue": rsa.generate_private_key(public_exponent=65537, key_size=2048),  # not published
    }
    directory = tmp_path_factory.mktemp("jwks")
    path = directory / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk("rsa-1", private["rsa-1"], "RS256"),
                                         _jwk("ec-1", private["ec-1"], "ES256")]}))
    return Keys(private, path)


def config_text(jwks_path: Path, **params: Any) -> str:
    """A config with one ``jwt`` handler checking every request."""
    merged = {"jwksPath": str(jwks_path), "issuer": ISSUER, "audiences": [AUDIENCE], **params}
    return json.dumps({
        "handlers": [{"name": "jwt-auth", "adapter": "jwt", "params": merged}],
        "instances": [{"name": "token", "template": "bearertoken", "params": {}}],
        "rules": [{"name": "authenticated", "actions": [{"handler": "jwt-auth", "instances": ["token"]}]}],
    })
