"""The ``jwt`` adapter: verify a request's JWT bearer token against a JWKS file.

What it does
    Checks ``bearertoken`` instances (a template this plugin registers; its
    ``authorization`` field defaults to ``request.headers["authorization"]``). The
    header must read ``Bearer <token>``; the token must be signed with one of the
    ``algorithms`` by a key of the JWKS file (picked by the token's ``kid``; a file
    with a single key needs none), carry an ``exp`` that has not passed, an ``nbf``
    (if any) that has, the configured ``issuer`` and one of the ``audiences``. A
    request that passes is allowed, with the token's ``sub`` in the request header
    ``subjectHeader``; any other is denied with UNAUTHENTICATED and the reason
    (``missing bearer token``, ``token expired at 2024-05-01T12:00:00Z``,
    ``invalid issuer``, ``unknown signing key 'k2'``, ``invalid signature`` ...).

Params
    ``jwksPath``           the JWKS file (``{"keys": [...]}``); relative to the config file.
    ``issuer``             the required ``iss``; empty: not checked.
    ``audiences``          accepted ``aud`` values (one must match); empty: not checked.
    ``algorithms``         accepted signature algorithms; default RS256 and ES256.
    ``leeway``             clock skew allowed on ``exp`` and ``nbf``; default ``30s``.
    ``maxValidDuration``   the longest any answer may be cached; default ``300s``.
    ``subjectHeader``      request header set to ``sub`` when allowed; empty: none.

Fail mode
    None needed at request time: the keys are read when the config loads, and a
    JWKS file that cannot be read or holds no usable key fails the load with an
    error naming ``jwksPath``.

Cacheability
    An allowed token is cacheable until its ``exp`` at most (and ``maxValidDuration``);
    a token not yet valid until its ``nbf``; other denials (missing, malformed,
    expired, wrongly signed tokens) for ``maxValidDuration``. Decisions are keyed by
    the header's value, so each token has its own entry.

Limits
    Only asymmetric algorithms (RS*, PS*, ES*, EdDSA): shared-secret HS* tokens are
    refused by design. The JWKS file is read at config load; after rotating keys,
    touch the config so it reloads. No remote JWKS URL, no token from a cookie or a
    query parameter, no claim-to-attribute mapping beyond ``subjectHeader``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from policy import (
    Adapter,
    AdapterRegistrar,
    BuildContext,
    CheckResult,
    Clock,
    Code,
    FieldError,
    Handler,
    HeaderOperation,
    ParamsError,
    Template,
    TemplateRegistrar,
    ValueType,
    Variety,
    hookimpl,
    param,
)

#: Algorithms a JWKS public key can verify; HS* (shared secrets) are deliberately absent.
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


@dataclass(frozen=True, slots=True)
class BearerToken:
    """An instance of ``bearertoken``: the request's Authorization header."""

    name: str
    authorization: str | None = None


BEARER_TOKEN = Template(
    "bearertoken", Variety.CHECK, {"authorization": ValueType.STRING}, BearerToken,
    "The Authorization header of a request (for bearer-token adapters).",
    defaults={"authorization": 'request.headers["authorization"]'},
)


@dataclass(frozen=True)
class JwtParams:
    """Params of the ``jwt`` adapter."""

    jwks_path: str = param(doc="The JWKS file holding the public keys (relative to the config file).")
    issuer: str = param("", doc="The required iss claim; empty: not checked.")
    audiences: list[str] = param(default_factory=list, doc="Accepted aud values (one must match); empty: not checked.")
    algorithms: list[str] = param(default_factory=lambda: ["RS256", "ES256"],
                                  doc="Accepted signature algorithms (asymmetric only).")
    leeway: dt.timedelta = param(dt.timedelta(seconds=30), doc="Clock skew allowed on exp and nbf.")
    max_valid_duration: dt.timedelta = param(dt.timedelta(seconds=300),
                                             doc="The longest any answer may be cached.")
    subject_header: str = param("x-jwt-subject", doc="Request header set to the token's sub when allowed; empty: none.")


class _Denied(Exception):
    def __init__(self, reason: str, valid_for: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.valid_for = reason, valid_for


def _utc(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class JwtHandler(Handler):
    """Verifies bearer tokens with the keys of one JWKS file."""

    def __init__(self, params: JwtParams, keys: dict[str | None, jwt.PyJWK], clock: Clock) -> None:
        self.params = params
        self.keys = keys
        self.clock = clock
        self.max_ttl = params.max_valid_duration.total_seconds()
        self.leeway = params.leeway.total_seconds()

    def check(self, instance: BearerToken) -> CheckResult:
        """Allow a valid token (cacheable until it expires); deny anything else with UNAUTHENTICATED."""
        try:
            claims, ttl = self._verify(instance.authorization)
        except _Denied as denied:
            ttl = self.max_ttl if denied.valid_for is None else min(denied.valid_for, self.max_ttl)
            return CheckResult.deny(denied.reason, Code.UNAUTHENTICATED, valid_duration=ttl)
        headers: tuple[HeaderOperation, ...] = ()
        if self.params.subject_header and isinstance(claims.get("sub"), str):
            headers = (HeaderOperation(self.params.subject_header, claims["sub"]),)
        return CheckResult.allow(valid_duration=ttl, request_headers=headers)

    def _token(self, header: str | None) -> str:
        if not header:
            raise _Denied("missing bearer token")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Denied("authorization header is not a bearer token")
        return token.strip()

    def _key(self, token: str) -> tuple[jwt.PyJWK, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _Denied(f"malformed token: {exc}") from None
        alg = header.get("alg")
        if alg not in self.params.algorithms:
            raise _Denied(f"token algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        key = self.keys.get(kid)
        if key is None and kid is None and len(self.keys) == 1:
            key = next(iter(self.keys.values()))
        if key is None:
            raise _Denied(f"unknown signing key {kid!r}" if kid else "token names no signing key (kid)")
        return key, alg

    def _verify(self, header: str | None) -> tuple[dict[str, Any], float]:
        token = self._token(header)
        key, alg = self._key(token)
        p = self.params
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[alg], audience=p.audiences or None, issuer=p.issuer or None,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "verify_aud": bool(p.audiences), "require": ["exp"]},
            )
        except jwt.InvalidSignatureError:
            raise _Denied("invalid signature") from None
        except jwt.MissingRequiredClaimError:
            raise _Denied("token has no expiry (exp)") from None
        except jwt.InvalidIssuerError:
            raise _Denied("invalid issuer") from None
        except jwt.InvalidAudienceError:
            raise _Denied("invalid audience") from None
        except jwt.PyJWTError as exc:
            raise _Denied(f"invalid token: {exc}") from None
        now = self.clock.now()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)):
            raise _Denied("token expiry (exp) is not a number")
        if now > exp + self.leeway:
            raise _Denied(f"token expired at {_utc(exp)}")
        if isinstance(nbf, (int, float)) and now < nbf - self.leeway:
            raise _Denied(f"token not valid before {_utc(nbf)}", valid_for=nbf - self.leeway - now)
        return claims, max(0.0, min(exp - now, self.max_ttl))


def load_jwks(path: Path, algorithms: list[str]) -> dict[str | None, jwt.PyJWK]:
    """Read a JWKS file into keys by ``kid``; raise ParamsError naming ``jwksPath`` when it cannot be used."""
    try:
        jwks = jwt.PyJWKSet.from_json(path.read_text())
    except OSError as exc:
        raise ParamsError([FieldError("jwksPath", f"cannot read {path}: {exc.strerror or exc}")]) from exc
    except (jwt.PyJWTError, ValueError) as exc:
        raise ParamsError([FieldError("jwksPath", f"{path} is not a usable JWKS: {exc}")]) from exc
    keys: dict[str | None, jwt.PyJWK] = {}
    for key in jwks.keys:
        if key.key_id in keys:
            raise ParamsError([FieldError("jwksPath", f"{path}: key id {key.key_id!r} appears twice")])
        keys[key.key_id] = key
    return keys


class Jwt(Adapter[JwtParams]):
    """Verifies JWT bearer tokens against a JWKS file."""

    name = "jwt"
    description = "Verifies JWT bearer tokens (RS256, ES256 ...) against a JWKS file"
    templates = ("bearertoken",)
    Params = JwtParams

    @classmethod
    def validate(cls, params: JwtParams) -> Iterator[FieldError]:
        """Known asymmetric algorithms only; a JWKS path; a positive cache bound."""
        if not params.jwks_path.strip():
            yield FieldError("jwksPath", "must not be empty")
        if not params.algorithms:
            yield FieldError("algorithms", "at least one algorithm is required")
        for index, alg in enumerate(params.algorithms):
            if alg not in ASYMMETRIC:
                yield FieldError(f"algorithms[{index}]", f"{alg!r} is not one of {', '.join(ASYMMETRIC)}")
        if params.max_valid_duration <= dt.timedelta(0):
            yield FieldError("maxValidDuration", "must be positive")

    @classmethod
    def build(cls, params: JwtParams, context: BuildContext) -> JwtHandler:
        """Load the JWKS file (relative to the config file)."""
        path = Path(params.jwks_path).expanduser()
        path = path if path.is_absolute() else context.config_dir / path
        return JwtHandler(params, load_jwks(path, params.algorithms), context.clock)


@hookimpl
def policy_register_templates(registry: TemplateRegistrar) -> None:
    """Register the ``bearertoken`` template."""
    registry.add(BEARER_TOKEN)


@hookimpl
def policy_register_adapters(registry: AdapterRegistrar) -> None:
    """Register the ``jwt`` adapter."""
    registry.add(Jwt)


__all__ = ["BEARER_TOKEN", "BearerToken", "Jwt", "JwtHandler", "JwtParams", "load_jwks"]
