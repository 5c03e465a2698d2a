"""Bearer token verification (servicekit/auth.py) and its FastAPI dependency, in-process.

Keys are made here (no network, no files beyond tmp_path); tokens are signed
with PyJWT, or built by hand where PyJWT would refuse to sign (alg=none).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from infra.dev_keys import write_key_pair
from servicekit.auth import (
    ADMIN,
    READ,
    WRITE,
    Authenticator,
    AuthSettings,
    Caller,
    ConfigError,
    InvalidToken,
    install_auth,
    load_authenticator,
    require_scope,
)
from servicekit.mint_token import load_private_key, mint
from servicekit.problems import install_problem_handlers

SECRET = "s" * 40
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_public(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def settings(tmp_path: Path, **env: Any) -> AuthSettings:
    # Every field given: the process environment (tests/conftest.py sets AUTH_*) plays no part.
    isolated: dict[str, Any] = {
        "auth_disabled": False,
        "auth_hs256_secret": None,
        "auth_public_key_files": "",
        "auth_jwks_file": None,
        "auth_audience": None,
        "auth_issuer": None,
        **env,
    }
    return AuthSettings(_env_file=None, **isolated)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    (tmp_path / "ec.pem").write_bytes(pem_public(EC_KEY))
    (tmp_path / "rsa.pem").write_bytes(pem_public(RSA_KEY))
    jwks = {
        "keys": [
            {**RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "r1", "use": "sig"},
        ]
    }
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    return tmp_path


@pytest.fixture
def auth(keys_dir: Path) -> Authenticator:
    return Authenticator.from_settings(
        settings(
            keys_dir,
            auth_hs256_secret=SECRET,
            auth_public_key_files=str(keys_dir / "ec.pem"),
            auth_jwks_file=keys_dir / "jwks.json",
        )
    )


def test_each_configured_key_type_authenticates_its_algorithm(auth: Authenticator) -> None:
    assert auth.algorithms == {"HS256", "ES256", "RS256"}
    for key, algorithm, kid in (
        (SECRET.encode(), "HS256", None),
        (EC_KEY, "ES256", None),
        (RSA_KEY, "RS256", "r1"),
    ):
        caller = auth.verify(mint("alice", [WRITE, READ], key, algorithm, kid=kid))
        assert caller == Caller("alice", frozenset({WRITE, READ}))


def test_scopes_come_from_scope_or_scp(auth: Authenticator) -> None:
    token = mint("bob", [], EC_KEY, "ES256", extra={"scope": None, "scp": [READ, 7, ADMIN]})
    assert auth.verify(token).scopes == {READ, ADMIN}
    token = mint("bob", [], EC_KEY, "ES256", extra={"scope": f" {WRITE}  {READ} "})
    assert auth.verify(token).scopes == {WRITE, READ}


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("expired", lambda: mint("a", [WRITE], EC_KEY, "ES256", ttl_seconds=-120), "expired"),
        ("other key", lambda: mint("a", [WRITE], OTHER_EC_KEY, "ES256"), "signature"),
        ("other secret", lambda: mint("a", [WRITE], b"t" * 40, "HS256"), "signature"),
        ("wrong kid", lambda: mint("a", [WRITE], RSA_KEY, "RS256", kid="nope"), "kid"),
        (
            "alg none",
            lambda: (
                b64({"alg": "none", "typ": "JWT"})
                + "."
                + b64({"sub": "a", "scope": WRITE, "exp": int(time.time()) + 60})
                + "."
            ),
            "algorithm",
        ),
        (
            "alg HS512 unknown",
            lambda: mint("a", [WRITE], SECRET.encode() * 2, "HS512"),
            "algorithm",
        ),
        ("no exp", lambda: mint("a", [WRITE], EC_KEY, "ES256", extra={"exp": None}), "exp"),
        ("no sub", lambda: mint("a", [WRITE], EC_KEY, "ES256", extra={"sub": None}), "sub"),
        ("sub with space", lambda: mint("a b", [WRITE], EC_KEY, "ES256"), "sub"),
        ("not yet valid", lambda: mint("a", [WRITE], EC_KEY, "ES256", extra={"nbf": 2**40}), ""),
        ("garbage", lambda: "not-a-jwt", "malformed"),
        ("three dots", lambda: "a.b.c", "malformed"),
        ("huge", lambda: "x" * 9000, "too long"),
    ],
)
def test_tokens_that_authenticate_nobody(auth: Authenticator, name: str, make: Any, reason: str):
    token = make()
    if name in ("no exp", "no sub"):
        claim = "exp" if name == "no exp" else "sub"
        payload = jwt.decode(token, options={"verify_signature": False})
        payload.pop(claim)
        token = jwt.encode(payload, EC_KEY, algorithm="ES256")
    with pytest.raises(InvalidToken) as refused:
        auth.verify(token)
    assert reason in refused.value.reason, (name, refused.value.reason)


def test_algorithm_confusion_public_key_as_hmac_secret_is_refused(keys_dir: Path) -> None:
    # Only an RSA public key is configured: an HS256 token "signed" with its PEM is refused
    # by algorithm, before any key is tried.
    only_rsa = Authenticator.from_settings(
        settings(keys_dir, auth_public_key_files=str(keys_dir / "rsa.pem"))
    )
    header = b64({"alg": "HS256", "typ": "JWT"})
    body = b64({"sub": "mallory", "scope": ADMIN, "exp": int(time.time()) + 60})
    import hashlib
    import hmac

    signature = hmac.new(pem_public(RSA_KEY), f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="algorithm"):
        only_rsa.verify(forged)
    # An ES256 token is not checked against the RSA key either.
    with pytest.raises(InvalidToken, match="algorithm"):
        only_rsa.verify(mint("a", [READ], EC_KEY, "ES256"))


def test_audience_and_issuer_are_checked_when_configured(keys_dir: Path) -> None:
    strict = Authenticator.from_settings(
        settings(
            keys_dir,
            auth_public_key_files=str(keys_dir / "ec.pem"),
            auth_audience="actionitems",
            auth_issuer="https://issuer.example",
        )
    )
    good = mint(
        "a", [READ], EC_KEY, "ES256", audience="actionitems", issuer="https://issuer.example"
    )
    assert strict.verify(good).sub == "a"
    for token, reason in (
        (
            mint("a", [READ], EC_KEY, "ES256", audience="other", issuer="https://issuer.example"),
            "audience",
        ),
        (mint("a", [READ], EC_KEY, "ES256", issuer="https://issuer.example"), "aud"),
        (
            mint("a", [READ], EC_KEY, "ES256", audience="actionitems", issuer="https://evil"),
            "issuer",
        ),
        (mint("a", [READ], EC_KEY, "ES256", audience="actionitems"), "iss"),
    ):
        with pytest.raises(InvalidToken, match=reason):
            strict.verify(token)
    # Without a configured audience, a token that names one is still accepted.
    lenient = Authenticator.from_settings(
        settings(keys_dir, auth_public_key_files=str(keys_dir / "ec.pem"))
    )
    assert lenient.verify(mint("a", [READ], EC_KEY, "ES256", audience="anything")).sub == "a"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({}, "AUTH_JWKS_FILE"),
        ({"auth_public_key_files": "/nonexistent.pem"}, "AUTH_PUBLIC_KEY_FILES"),
        ({"auth_jwks_file": "/nonexistent.json"}, "AUTH_JWKS_FILE"),
        ({"auth_hs256_secret": "-----BEGIN PUBLIC KEY-----" + "x" * 40}, "AUTH_HS256_SECRET"),
    ],
)
def test_unusable_key_settings_name_the_setting(env: dict[str, str], setting: str, tmp_path: Path):
    with pytest.raises(ConfigError) as error:
        Authenticator.from_settings(settings(tmp_path, **env))
    assert error.value.setting == setting


def test_a_private_key_in_a_jwks_or_a_small_rsa_key_is_refused(tmp_path: Path) -> None:
    private_jwk = json.loads(ECAlgorithm.to_jwk(EC_KEY))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [private_jwk]}))
    with pytest.raises(ConfigError, match="private"):
        Authenticator.from_settings(settings(tmp_path, auth_jwks_file=tmp_path / "jwks.json"))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "small.pem").write_bytes(pem_public(small))
    with pytest.raises(ConfigError, match="2048"):
        Authenticator.from_settings(
            settings(tmp_path, auth_public_key_files=str(tmp_path / "small.pem"))
        )


def test_start_up_stops_with_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    for name, value in (
        ("AUTH_HS256_SECRET", "short"),
        ("AUTH_DISABLED", "perhaps"),
        ("AUTH_JWKS_FILE", str(tmp_path / "missing.json")),
    ):
        for other in ("AUTH_HS256_SECRET", "AUTH_DISABLED", "AUTH_JWKS_FILE"):
            monkeypatch.delenv(other, raising=False)
        monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit) as stopped:
            load_authenticator()
        assert stopped.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"configuration error: {name}"), lines
        assert "short" not in lines[0]  # a secret is never echoed


def test_dev_keys_mint_tokens_the_jwks_verifies(tmp_path: Path) -> None:
    keys = write_key_pair(tmp_path)
    assert (keys.private_key.stat().st_mode & 0o777) == 0o600
    key, algorithm, kid = load_private_key(keys.private_key)
    assert (algorithm, kid) == ("ES256", keys.kid)
    auth = Authenticator.from_settings(settings(tmp_path, auth_jwks_file=keys.jwks))
    assert auth.verify(mint("dev", [WRITE], key, algorithm, kid=kid)).sub == "dev"


# -- the dependency, on a small app ------------------------------------------------


def small_app(auth: Authenticator) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    install_auth(app, auth, "test")

    @app.post("/write")
    async def write(caller: Caller = Depends(require_scope(WRITE))) -> dict[str, str]:
        return {"caller": caller.sub}

    return app


def test_401_and_403_are_problems_that_leak_nothing(auth: Authenticator) -> None:
    client = TestClient(small_app(auth))
    ok = client.post(
        "/write", headers={"Authorization": "Bearer " + mint("w", [WRITE], EC_KEY, "ES256")}
    )
    assert ok.status_code == 200 and ok.json() == {"caller": "w"}
    answers = {
        "missing": client.post("/write"),
        "basic": client.post("/write", headers={"Authorization": "Basic dXNlcjpwYXNz"}),
        "expired": client.post(
            "/write",
            headers={
                "Authorization": "Bearer " + mint("w", [WRITE], EC_KEY, "ES256", ttl_seconds=-99)
            },
        ),
        "other key": client.post(
            "/write",
            headers={"Authorization": "Bearer " + mint("w", [WRITE], OTHER_EC_KEY, "ES256")},
        ),
    }
    bodies = set()
    for name, answer in answers.items():
        assert answer.status_code == 401, name
        assert answer.headers["www-authenticate"].startswith("Bearer"), name
        assert answer.headers["content-type"] == "application/problem+json", name
        bodies.add(answer.text)
    assert len(bodies) == 1  # the same body whatever went wrong
    assert "expired" not in bodies.pop()
    read_only = client.post(
        "/write", headers={"Authorization": "Bearer " + mint("r", [READ], EC_KEY, "ES256")}
    )
    assert read_only.status_code == 403
    assert read_only.json()["type"] == "/problems/forbidden"
    assert "r" not in read_only.json()["detail"].split()


def test_the_openapi_document_states_the_bearer_scheme_and_the_scope(auth: Authenticator) -> None:
    document = TestClient(small_app(auth)).get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert document["paths"]["/write"]["post"]["security"] == [{"bearerAuth": [WRITE]}]


def test_disabled_lets_everyone_in_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    disabled = Authenticator.from_settings(settings(tmp_path, auth_disabled=True))
    client = TestClient(small_app(disabled))
    assert capsys.readouterr().err.startswith("WARNING: AUTHENTICATION IS DISABLED")
    assert client.post("/write").json() == {"caller": "anonymous"}


def test_a_remembered_token_still_expires(auth: Authenticator, monkeypatch) -> None:
    token = mint("carol", [WRITE], EC_KEY, "ES256", ttl_seconds=60)
    first = auth.verify(token)
    assert auth.verify(token) == first  # answered from memory: same caller
    later = time.time() + 60 + auth.leeway + 1
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(InvalidToken, match="expired"):
        auth.verify(token)  # the memory checks exp as the full check would
