"""The suite's caller: one HS256 secret given to every service it starts, one token, all scopes.

When the services do not check tokens, the header is simply ignored.
"""

from __future__ import annotations

import secrets
import time

import jwt

SECRET = secrets.token_hex(32)
ENV = {"AUTH_HS256_SECRET": SECRET}
TOKEN = jwt.encode(
    {
        "sub": "reliability-suite",
        "scope": "action-items:write action-items:read action-items:admin",
        "iat": int(time.time()),
        "exp": int(time.time()) + 12 * 3600,
    },
    SECRET,
    algorithm="HS256",
)
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
