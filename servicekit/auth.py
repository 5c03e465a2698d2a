"""Who may call: bearer JWTs verified against configured keys, and the scopes they grant.

Verification is PyJWT's; this module only decides which keys and algorithms are
acceptable, and turns every refusal into the same problem body:

- The accepted algorithms come from the configured keys, never from the token:
  an HS256 secret accepts HS256, an RSA public key RS256, a P-256 public key ES256.
  A token whose ``alg`` no configured key has (``none`` included) is refused
  before any signature check, so a public key can never be used as an HMAC secret.
- ``exp`` and ``sub`` are required; ``aud`` and ``iss`` are checked when configured.
- Scopes come from ``scope`` (space-separated string) or ``scp`` (list or string).

``require_scope("action-items:write")`` is the FastAPI dependency a route uses;
it answers 401 (``WWW-Authenticate: Bearer``) without a usable token and 403
when the token lacks the scope. The reason of a refusal goes to the log (never
the token), the client learns nothing about keys or users.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from fastapi import FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt.types import Options
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.auth_keys import (
    ConfigError,
    VerifyKey,
    load_jwks,
    load_pem_public_key,
)
from servicekit.problems import Problem

log = logging.getLogger("servicekit.auth")

WRITE = "action-items:write"
READ = "action-items:read"
ADMIN = "action-items:admin"
ALL_SCOPES = (WRITE, READ, ADMIN)

SCHEME_NAME = "bearerAuth"
MAX_TOKEN_CHARS = 8192
MIN_HS256_SECRET_BYTES = 32
# The caller's name as it is recorded in commands and scopes idempotency keys.
SUB_PATTERN = r"^[!-~]{1,255}$"
_SUB_RE = re.compile(SUB_PATTERN)
# The name of the caller when authentication is switched off (development only).
DEV_CALLER = "anonymous"


class AuthSettings(BaseSettings):
    """How bearer tokens are verified; read by every HTTP service at start-up."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    auth_disabled: bool = False
    auth_hs256_secret: SecretStr | None = None
    auth_public_key_files: str = ""
    auth_jwks_file: Path | None = None
    auth_audience: str | None = Field(default=None, min_length=1, max_length=255)
    auth_issuer: str | None = Field(default=None, min_length=1, max_length=255)
    auth_leeway_seconds: int = Field(default=30, ge=0, le=300)

    @field_validator("auth_hs256_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_HS256_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_HS256_SECRET_BYTES} bytes")
        return value

    def public_key_paths(self) -> list[Path]:
        return [Path(p.strip()) for p in self.auth_public_key_files.split(",") if p.strip()]


class InvalidToken(Exception):
    """A token that does not authenticate anyone; ``reason`` is for the log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: the token's ``sub`` and the scopes it was granted."""

    sub: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    authenticated: bool = True


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    found: set[str] = set()
    scope = claims.get("scope")
    if isinstance(scope, str):
        found.update(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, str):
        found.update(scp.split())
    elif isinstance(scp, list):
        found.update(s for s in scp if isinstance(s, str))
    return frozenset(found)


class Authenticator:
    """Verifies bearer tokens with a fixed set of keys; ``disabled`` lets everyone in.

    A token that verified is remembered (at most ``VERIFIED_CACHE`` of them, the
    oldest forgotten first) with its caller and ``exp``: the same token again is
    not checked a second time, only its expiry is (with the leeway). The keys are
    fixed for the process, so the outcome could not differ; it spares the
    signature check (ES256: about 8% of a write's CPU in the make bench profile).
    """

    VERIFIED_CACHE = 4096

    def __init__(
        self,
        keys: Iterable[VerifyKey],
        *,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_seconds: int = 30,
        disabled: bool = False,
    ) -> None:
        self.keys = tuple(keys)
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway_seconds
        self.disabled = disabled
        if not self.keys and not disabled:
            raise ConfigError("AUTH_JWKS_FILE", "no verification key configured")
        self.algorithms = frozenset(k.algorithm for k in self.keys)
        self._verified: dict[str, tuple[Caller, float]] = {}

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Authenticator:
        keys: list[VerifyKey] = []
        if settings.auth_hs256_secret is not None:
            secret = settings.auth_hs256_secret.get_secret_value().encode()
            if b"-----BEGIN" in secret:
                raise ConfigError("AUTH_HS256_SECRET", "looks like a PEM key, not a secret")
            keys.append(VerifyKey("HS256", secret, None, "AUTH_HS256_SECRET"))
        keys.extend(load_pem_public_key(path) for path in settings.public_key_paths())
        if settings.auth_jwks_file is not None:
            keys.extend(load_jwks(settings.auth_jwks_file))
        if not keys and not settings.auth_disabled:
            raise ConfigError(
                "AUTH_JWKS_FILE",
                "no verification key: set AUTH_JWKS_FILE, AUTH_PUBLIC_KEY_FILES or "
                "AUTH_HS256_SECRET (or AUTH_DISABLED=true for local development only)",
            )
        return cls(
            keys,
            audience=settings.auth_audience,
            issuer=settings.auth_issuer,
            leeway_seconds=settings.auth_leeway_seconds,
            disabled=settings.auth_disabled,
        )

    def verify(self, token: str) -> Caller:
        """The caller a token authenticates, or InvalidToken with the reason (for the log)."""
        known = self._verified.get(token)
        if known is not None:
            caller, expires = known
            if time.time() <= expires + self.leeway:
                return caller
            self._verified.pop(token, None)
            raise InvalidToken("expired")
        caller, expires = self._check(token)
        if len(self._verified) >= self.VERIFIED_CACHE:
            self._verified.pop(next(iter(self._verified)), None)
        self._verified[token] = (caller, expires)
        return caller

    def _check(self, token: str) -> tuple[Caller, float]:
        """Every check of a token not seen before: (its caller, its exp)."""
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise InvalidToken(f"algorithm {str(algorithm)[:20]!r} not accepted")
        kid = header.get("kid")
        candidates = [
            k
            for k in self.keys
            if k.algorithm == algorithm and (kid is None or k.kid is None or k.kid == kid)
        ]
        if not candidates:
            raise InvalidToken("no key with that kid")
        required = ["exp", "sub"]
        if self.audience is not None:
            required.append("aud")
        if self.issuer is not None:
            required.append("iss")
        options: Options = {"require": required, "verify_aud": self.audience is not None}
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=[key.algorithm],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options=options,
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise InvalidToken("expired") from None
            except jwt.InvalidAudienceError:
                raise InvalidToken("wrong audience") from None
            except jwt.InvalidIssuerError:
                raise InvalidToken("wrong issuer") from None
            except jwt.MissingRequiredClaimError as exc:
                raise InvalidToken(f"missing claim {exc.claim}") from None
            except jwt.PyJWTError as exc:
                raise InvalidToken(f"invalid token ({type(exc).__name__})") from None
            sub = claims.get("sub")
            if not isinstance(sub, str) or not _SUB_RE.fullmatch(sub):
                raise InvalidToken("sub is not 1..255 visible ASCII characters")
            return Caller(sub, _scopes(claims)), float(claims["exp"])
        raise InvalidToken("signature does not verify with any configured key")


# -- settings and start-up ----------------------------------------------------


def load_authenticator() -> Authenticator:
    """Authenticator from the environment, or stop the process with one line naming the setting."""
    try:
        settings = AuthSettings()
        authenticator = Authenticator.from_settings(settings)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "_".join(str(p) for p in error["loc"]).upper()
        shown = "**********" if name == "AUTH_HS256_SECRET" else repr(error.get("input"))
        print(f"configuration error: {name}={shown}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    except ConfigError as exc:
        print(f"configuration error: {exc.setting}: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    return authenticator


def install_auth(app: FastAPI, authenticator: Authenticator, service: str) -> None:
    """Make ``require_scope`` work on this app; say loudly when authentication is off."""
    app.state.authenticator = authenticator
    if authenticator.disabled:
        message = (
            f"AUTHENTICATION IS DISABLED (AUTH_DISABLED=true): {service} lets every caller in "
            f"with every scope as '{DEV_CALLER}'. For local development only; never expose it."
        )
        log.warning(message, extra={"service": service})
        print(f"WARNING: {message}", file=sys.stderr, flush=True)
    else:
        log.info(
            "bearer authentication on",
            extra={
                "service": service,
                "algorithms": sorted(authenticator.algorithms),
                "keys": len(authenticator.keys),
                "audience": authenticator.audience,
                "issuer": authenticator.issuer,
            },
        )


# -- the FastAPI dependency ---------------------------------------------------

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name=SCHEME_NAME,
    bearerFormat="JWT",
    description=(
        "A JWT with `exp` and `sub`; `sub` is the caller. Scopes (claim `scope`, "
        f"space-separated, or `scp`): `{WRITE}` for writes, `{READ}` for reads, "
        f"`{ADMIN}` for /metrics and operator endpoints."
    ),
)


def unauthorized(invalid: bool) -> Problem:
    return Problem(
        401,
        "Unauthorized",
        "A valid bearer token is required.",
        type_="/problems/unauthorized",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"' if invalid else "Bearer"},
    )


def forbidden(scope: str) -> Problem:
    return Problem(
        403,
        "Forbidden",
        f"The token does not grant the scope this operation needs ({scope}).",
        type_="/problems/forbidden",
        headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
    )


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    authenticator: Authenticator | None = getattr(request.app.state, "authenticator", None)
    if authenticator is None:
        raise RuntimeError("install_auth was not called on this app")
    if authenticator.disabled:
        return Caller(DEV_CALLER, frozenset(ALL_SCOPES), authenticated=False)
    if credentials is None:
        log.info("request without a bearer token", extra={"path": request.url.path})
        raise unauthorized(False)
    try:
        return authenticator.verify(credentials.credentials)
    except InvalidToken as exc:
        log.info("bearer token refused", extra={"reason": exc.reason, "path": request.url.path})
        raise unauthorized(True) from None


def caller_of(request: Request) -> Caller:
    """The caller ``require_scope`` authenticated for this request (a route-level dependency)."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        raise RuntimeError("no require_scope dependency ran for this route")
    return caller


def require_scope(scope: str) -> Callable[..., Awaitable[Caller]]:
    """A FastAPI dependency: the caller of a token that grants ``scope``, else 401/403."""

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Security(BEARER, scopes=[scope]),
    ) -> Caller:
        caller = authenticate(request, credentials)
        if scope not in caller.scopes:
            log.info(
                "token lacks the scope",
                extra={"caller": caller.sub, "scope": scope, "path": request.url.path},
            )
            raise forbidden(scope)
        request.state.caller = caller
        return caller

    dependency.__name__ = f"require_{scope.replace(':', '_').replace('-', '_')}"
    return dependency
