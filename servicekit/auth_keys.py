"""The keys a bearer token may be signed with: PEM public keys and JWKS files, checked.

The algorithm a key accepts follows from the key itself (RSA: RS256, P-256:
ES256), never from a token; a key that is too weak, private or of another kind
is a configuration error naming the setting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

MIN_RSA_BITS = 2048


class ConfigError(ValueError):
    """A setting that cannot be used; ``setting`` names the variable."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


@dataclass(frozen=True)
class VerifyKey:
    algorithm: str
    key: Any
    kid: str | None = None
    source: str = ""


def _algorithm_of_public_key(key: Any, source: str, setting: str) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(setting, f"{source}: RSA key of {key.key_size} bits (min 2048)")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ConfigError(setting, f"{source}: EC curve {key.curve.name}; ES256 needs P-256")
        return "ES256"
    raise ConfigError(setting, f"{source}: not an RSA or P-256 public key")


def load_pem_public_key(path: Path, setting: str = "AUTH_PUBLIC_KEY_FILES") -> VerifyKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigError(setting, f"{path} is not a PEM public key") from None
    return VerifyKey(_algorithm_of_public_key(key, str(path), setting), key, None, str(path))


def load_jwks(path: Path, setting: str = "AUTH_JWKS_FILE") -> list[VerifyKey]:
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(setting, f"{path} is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ConfigError(setting, f'{path}: expected {{"keys": [...]}}')
    keys = []
    for index, entry in enumerate(document["keys"]):
        where = f"{path} key {index}"
        if not isinstance(entry, dict):
            raise ConfigError(setting, f"{where}: not an object")
        if entry.get("kty") not in ("RSA", "EC"):
            raise ConfigError(setting, f"{where}: kty must be RSA or EC (public keys only)")
        if entry.get("use", "sig") != "sig":
            raise ConfigError(setting, f"{where}: use must be sig")
        if "d" in entry:
            raise ConfigError(setting, f"{where}: holds a private key; publish public keys only")
        try:
            jwk = jwt.PyJWK.from_dict(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise ConfigError(setting, f"{where}: {exc}") from None
        algorithm = _algorithm_of_public_key(jwk.key, where, setting)
        if entry.get("alg", algorithm) != algorithm:
            raise ConfigError(setting, f"{where}: alg {entry.get('alg')} does not fit the key")
        kid = entry.get("kid")
        keys.append(VerifyKey(algorithm, jwk.key, str(kid) if kid is not None else None, where))
    if not keys:
        raise ConfigError(setting, f"{path} has no keys")
    return keys
