"""Development signing keys: ``python -m infra.dev_keys [DIR]`` (default .infra/auth/).

Creates, once, a P-256 key pair for ES256: the private key (mode 0600, read by
``python -m servicekit.mint_token``) and a JWKS file with its public half (what
the services read through AUTH_JWKS_FILE). Existing files are kept, so tokens
minted earlier stay valid across ``make up``. Prints the JWKS path.

``python -m infra.dev_keys --curl`` prints ready-to-paste curl lines with a
write token and a read token that the running services accept (``make up``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / ".infra" / "auth"
PRIVATE_NAME = "dev-es256-private.pem"
JWKS_NAME = "jwks.json"


@dataclass(frozen=True)
class DevKeys:
    private_key: Path
    jwks: Path
    kid: str


def thumbprint(public_jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint of an EC public key (base64url of sha256)."""
    members = {name: public_jwk[name] for name in ("crv", "kty", "x", "y")}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def write_key_pair(directory: Path) -> DevKeys:
    """A new ES256 key pair in ``directory`` (overwrites)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    public_jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    kid = thumbprint(public_jwk)
    private = directory / PRIVATE_NAME
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    (directory / (PRIVATE_NAME + ".kid")).write_text(kid + "\n")
    jwks = {"keys": [{**public_jwk, "kid": kid, "use": "sig", "alg": "ES256"}]}
    (directory / JWKS_NAME).write_text(json.dumps(jwks, indent=2) + "\n")
    return DevKeys(private, directory / JWKS_NAME, kid)


def ensure_dev_keys(directory: Path = DEFAULT_DIR) -> DevKeys:
    """The key pair in ``directory``, created when it is missing or incomplete."""
    private, jwks, kid_file = (
        directory / PRIVATE_NAME,
        directory / JWKS_NAME,
        directory / (PRIVATE_NAME + ".kid"),
    )
    if private.exists() and jwks.exists() and kid_file.exists():
        return DevKeys(private, jwks, kid_file.read_text().strip())
    return write_key_pair(directory)


def curl_lines(command_url: str, query_url: str, ttl_seconds: int = 86400) -> list[str]:
    """Ready-to-paste curl lines carrying a write and a read token the services accept."""
    from servicekit.auth import READ, WRITE
    from servicekit.mint_token import load_private_key, mint

    create = (
        f"curl -sS -X POST {command_url}/action-items -H 'Content-Type: application/json' "
        """-d '{"title": "My first action item"}'"""
    )
    read = f"curl -sS {query_url}/action-items"
    if os.environ.get("AUTH_DISABLED", "").lower() in ("1", "true", "yes", "on"):
        return [
            "  authentication is DISABLED (AUTH_DISABLED): no token needed",
            f"  {create}",
            f"  {read}",
        ]
    audience = os.environ.get("AUTH_AUDIENCE") or None
    issuer = os.environ.get("AUTH_ISSUER") or None
    kid: str | None
    if os.environ.get("AUTH_HS256_SECRET"):
        key, algorithm, kid = os.environ["AUTH_HS256_SECRET"].encode(), "HS256", None
    elif os.environ.get("AUTH_JWKS_FILE", str(DEFAULT_DIR / JWKS_NAME)) == str(
        DEFAULT_DIR / JWKS_NAME
    ):
        key, algorithm, kid = load_private_key(ensure_dev_keys().private_key)
    else:
        return ["  the services verify tokens with your own keys: mint tokens with your issuer"]

    def token(sub: str, scope: str) -> str:
        return mint(
            sub, [scope], key, algorithm, kid=kid, ttl_seconds=ttl_seconds,
            audience=audience, issuer=issuer,
        )  # fmt: skip

    hours = ttl_seconds // 3600
    return [
        f"  write ({WRITE}, sub dev-writer, valid {hours} h):",
        f"  {create} -H 'Authorization: Bearer {token('dev-writer', WRITE)}'",
        f"  read ({READ}, sub dev-reader, valid {hours} h):",
        f"  {read} -H 'Authorization: Bearer {token('dev-reader', READ)}'",
        "  other tokens: .venv/bin/python -m servicekit.mint_token --sub NAME --scope SCOPE",
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--curl"]:
        command_url = args[1] if len(args) > 1 else "http://localhost:8000"
        query_url = args[2] if len(args) > 2 else "http://localhost:8001"
        print("\n".join(curl_lines(command_url, query_url)))
        return 0
    directory = Path(args[0]) if args else DEFAULT_DIR
    keys = ensure_dev_keys(directory)
    print(keys.jwks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
