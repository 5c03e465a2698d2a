"""Bearer tokens for tests: a key pair the services under test trust, and one they do not.

tests/conftest.py puts ``auth_env()`` into the environment, so every service the
tests start (process or in-process app) verifies tokens against TRUSTED's JWKS
with an audience and an issuer configured. ``bearer("alice", WRITE)`` gives the
headers of a caller; ``refused_tokens(scope)`` the tokens each protected route
must refuse (no token, expired, another key, alg=none, wrong audience, wrong scope).
"""

from __future__ import annotations

import atexit
import base64
import functools
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from infra.dev_keys import DevKeys, write_key_pair
from servicekit.auth import ADMIN, ALL_SCOPES, READ, WRITE
from servicekit.mint_token import load_private_key, mint

AUDIENCE = "actionitems-tests"
ISSUER = "https://issuer.tests.invalid"
TTL_SECONDS = 12 * 3600

_DIR = Path(tempfile.mkdtemp(prefix="actionitems-test-keys-"))
atexit.register(shutil.rmtree, _DIR, True)
TRUSTED: DevKeys = write_key_pair(_DIR / "trusted")
UNTRUSTED: DevKeys = write_key_pair(_DIR / "untrusted")

__all__ = [
    "ADMIN",
    "ALL_SCOPES",
    "READ",
    "WRITE",
    "auth_env",
    "bearer",
    "operator_headers",
    "refused_tokens",
    "token",
]


def auth_env() -> dict[str, str]:
    return {
        "AUTH_JWKS_FILE": str(TRUSTED.jwks),
        "AUTH_AUDIENCE": AUDIENCE,
        "AUTH_ISSUER": ISSUER,
        "AUTH_DISABLED": "false",
        # Tests send many writes as one caller; the rate limit is tested on its own.
        "RATE_LIMIT_WRITES": "1000000/second",
    }


def token(
    sub: str,
    *scopes: str,
    keys: DevKeys = TRUSTED,
    ttl_seconds: int = TTL_SECONDS,
    audience: str | None = AUDIENCE,
    issuer: str | None = ISSUER,
) -> str:
    key, algorithm, kid = load_private_key(keys.private_key)
    return mint(
        sub,
        list(scopes),
        key,
        algorithm,
        kid=kid,
        ttl_seconds=ttl_seconds,
        audience=audience,
        issuer=issuer,
    )


def bearer(sub: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, *scopes)}"}


@functools.cache
def operator_headers() -> dict[str, str]:
    """An operator's headers (admin scope), for /metrics and /readyz."""
    return bearer("operator", ADMIN)


@functools.cache
def caller_headers(sub: str) -> dict[str, str]:
    """A caller with every scope: what tests that are not about authorization send."""
    return bearer(sub, *ALL_SCOPES)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(sub: str, *scopes: str) -> str:
    """An ``alg=none`` token with otherwise valid claims."""
    claims = {
        "sub": sub,
        "scope": " ".join(scopes),
        "exp": int(time.time()) + 3600,
        "aud": AUDIENCE,
        "iss": ISSUER,
    }
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def refused_tokens(scope: str) -> dict[str, tuple[dict[str, str], int]]:
    """What a route that needs ``scope`` must refuse: name -> (headers, expected status)."""
    others = [s for s in ALL_SCOPES if s != scope]

    def auth(value: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {value}"}

    return {
        "no token": ({}, 401),
        "not a bearer": ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        "malformed": (auth("not.a.jwt"), 401),
        "expired": (auth(token("t", scope, ttl_seconds=-600)), 401),
        "other key": (auth(token("t", scope, keys=UNTRUSTED)), 401),
        "alg none": (auth(unsigned("t", scope)), 401),
        "wrong audience": (auth(token("t", scope, audience="someone-else")), 401),
        "wrong issuer": (auth(token("t", scope, issuer="https://evil.invalid")), 401),
        "wrong scope": (auth(token("t", *others)), 403),
    }
