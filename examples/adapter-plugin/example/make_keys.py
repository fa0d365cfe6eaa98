"""Make a test RSA key: its public half in jwks.json, a token signed by it on stdout (for trying the example)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def main(directory: Path) -> None:
    """Write ``directory/jwks.json`` and print a token valid for ten minutes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    (directory / "jwks.json").write_text(json.dumps({"keys": [{**public, "kid": "k1", "alg": "RS256"}]}))
    now = int(time.time())
    claims = {"iss": "https://issuer.example", "aud": "books-api", "sub": "alice", "iat": now, "exp": now + 600}
    print(jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"}))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
