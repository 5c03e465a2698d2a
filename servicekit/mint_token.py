"""Mint a bearer token for a caller: ``python -m servicekit.mint_token --sub alice --scope W``.

The signing key is a PEM private key (RSA: RS256, P-256: ES256; default the
development key that ``make up`` creates in .infra/auth/) or, with ``--hs256``,
the shared secret in AUTH_HS256_SECRET. ``aud`` and ``iss`` default to
AUTH_AUDIENCE and AUTH_ISSUER when those are set, so the token fits the services
started from the same environment. Prints the token alone on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from servicekit.auth import ALL_SCOPES

REPO = Path(__file__).resolve().parents[1]
DEV_KEY_DIR = REPO / ".infra" / "auth"
DEV_PRIVATE_KEY = DEV_KEY_DIR / "dev-es256-private.pem"


def load_private_key(path: Path) -> tuple[Any, str, str | None]:
    """(key, algorithm, kid) from a PEM private key; the kid is in a ``<path>.kid`` file if any."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm = "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        algorithm = "ES256"
    else:
        raise ValueError(f"{path}: not an RSA or P-256 private key")
    kid_file = path.with_name(path.name + ".kid")
    kid = kid_file.read_text().strip() if kid_file.exists() else None
    return key, algorithm, kid


def mint(
    sub: str,
    scopes: list[str] | tuple[str, ...],
    key: Any,
    algorithm: str,
    *,
    kid: str | None = None,
    ttl_seconds: int = 3600,
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": sub,
        "scope": " ".join(scopes),
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": str(uuid.uuid4()),
    }
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    claims.update(extra or {})
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servicekit.mint_token", description="Mint a bearer token (JWT)."
    )
    parser.add_argument("--sub", required=True, help="the caller (1..255 visible ASCII)")
    parser.add_argument(
        "--scope",
        action="append",
        default=[],
        help=f"a scope to grant; repeat for several ({', '.join(ALL_SCOPES)})",
    )
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until exp (default 3600)")
    parser.add_argument("--key", type=Path, default=DEV_PRIVATE_KEY, help="PEM private key")
    parser.add_argument(
        "--hs256", action="store_true", help="sign with AUTH_HS256_SECRET instead of --key"
    )
    parser.add_argument("--aud", default=os.environ.get("AUTH_AUDIENCE") or None)
    parser.add_argument("--iss", default=os.environ.get("AUTH_ISSUER") or None)
    args = parser.parse_args(argv)
    if not args.scope:
        parser.error("give at least one --scope")
    if not 1 <= args.ttl <= 366 * 86400:
        parser.error("--ttl must be 1..31622400 seconds")
    kid: str | None
    if args.hs256:
        secret = os.environ.get("AUTH_HS256_SECRET", "")
        if len(secret.encode()) < 32:
            print(
                "mint_token: AUTH_HS256_SECRET is unset or shorter than 32 bytes", file=sys.stderr
            )
            return 2
        key, algorithm, kid = secret.encode(), "HS256", None
    else:
        try:
            key, algorithm, kid = load_private_key(args.key)
        except (OSError, ValueError) as exc:
            print(
                f"mint_token: cannot use {args.key}: {exc} "
                "(run 'make up' or 'python -m infra.dev_keys' to create the development key)",
                file=sys.stderr,
            )
            return 2
    token = mint(
        args.sub,
        args.scope,
        key,
        algorithm,
        kid=kid,
        ttl_seconds=args.ttl,
        audience=args.aud,
        issuer=args.iss,
    )
    print(token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
