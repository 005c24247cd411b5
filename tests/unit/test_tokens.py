"""TokenVerifier: pinned algorithms, required claims, and every failure is Unauthorized."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from nexus.auth import Principal, TokenVerifier, mint_token, resolve_hmac_secret
from nexus.auth.tokens import DEV_SECRET_FILE
from nexus.config import Settings, load_settings
from nexus.errors import ConfigError, Unauthorized

SECRET = "test-secret-0123456789-abcdefghij"  # 33 characters: no short-key warning


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "alice",
        "tenant": "acme",
        "roles": ["member"],
        "kind": "human",
        "iat": int(time.time()),
        "exp": int(time.time() + 3600),
        "iss": "nexus",
        "aud": "nexus",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs_token(payload: dict[str, Any], key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg)


def hand_signed_hs256(payload: dict[str, Any], key: bytes) -> str:
    """An HS256 token signed with `hmac` directly, since PyJWT refuses PEM text as a key."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(payload).encode())
    signing_input = f"{header}.{body}".encode()
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(signature)}"


def unsigned(payload: dict[str, Any]) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(payload).encode())}."


def principal_fields(p: Principal) -> tuple[str, str, frozenset[str], str]:
    return (p.user_id, p.tenant, p.roles, p.kind)


def rejected(verifier: TokenVerifier, token: Any) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        verifier.verify(token)
    assert info.value.code == "unauthorized"
    return info.value


@pytest.fixture
def hs() -> TokenVerifier:
    return TokenVerifier(load_settings(environ={"NEXUS_AUTH_SECRET": SECRET}))


# -- HS256 -------------------------------------------------------------------


def test_valid_token(hs: TokenVerifier) -> None:
    p = hs.verify(hs_token(claims(roles=["member", "admin"])))
    assert isinstance(p, Principal)
    assert principal_fields(p) == ("alice", "acme", frozenset({"member", "admin"}), "human")
    assert p.has_any_role(("admin",))
    assert not p.has_any_role(("owner",))


def test_valid_agent_token_defaults() -> None:
    verifier = TokenVerifier(Settings(auth_secret=SECRET))
    p = verifier.verify(hs_token(claims(sub="bot-1", tenant="t.e_s:t@x+y-z", kind="agent")))
    assert (p.user_id, p.tenant, p.kind) == ("bot-1", "t.e_s:t@x+y-z", "agent")
    # roles and kind are optional claims
    p = verifier.verify(hs_token(claims(roles=None, kind=None)))
    assert p.roles == frozenset()
    assert p.kind == "human"


def test_mint_token_round_trip(hs: TokenVerifier) -> None:
    token = mint_token(SECRET, user="bob", tenant="acme", roles=("admin",), kind="agent")
    assert principal_fields(hs.verify(token)) == ("bob", "acme", frozenset({"admin"}), "agent")


def test_explicit_hmac_secret_argument() -> None:
    other = "another-secret-0123456789-abcdefgh"
    verifier = TokenVerifier(Settings(), hmac_secret=other)
    assert verifier.verify(hs_token(claims(), key=other)).user_id == "alice"
    rejected(verifier, hs_token(claims()))


def test_expired(hs: TokenVerifier) -> None:
    err = rejected(hs, hs_token(claims(iat=int(time.time() - 7200), exp=int(time.time() - 60))))
    assert "expired" in err.message


def test_leeway_accepts_recently_expired() -> None:
    verifier = TokenVerifier(Settings(auth_secret=SECRET, auth_leeway=120.0))
    assert verifier.verify(hs_token(claims(exp=int(time.time() - 60)))).user_id == "alice"
    rejected(verifier, hs_token(claims(exp=int(time.time() - 600))))


def test_not_before_in_future(hs: TokenVerifier) -> None:
    err = rejected(hs, hs_token(claims(nbf=int(time.time() + 600))))
    assert "not yet valid" in err.message


def test_not_before_in_past_accepted(hs: TokenVerifier) -> None:
    assert hs.verify(hs_token(claims(nbf=int(time.time() - 10)))).user_id == "alice"


def test_wrong_signature(hs: TokenVerifier) -> None:
    err = rejected(hs, hs_token(claims(), key="not-the-secret-0123456789-abcdefg"))
    assert "signature" in err.message


def test_tampered_payload(hs: TokenVerifier) -> None:
    header, _, signature = hs_token(claims()).split(".")
    forged = b64url(json.dumps(claims(roles=["admin"])).encode())
    rejected(hs, f"{header}.{forged}.{signature}")


def test_wrong_audience(hs: TokenVerifier) -> None:
    assert "audience" in rejected(hs, hs_token(claims(aud="other"))).message


def test_wrong_issuer(hs: TokenVerifier) -> None:
    assert "issuer" in rejected(hs, hs_token(claims(iss="evil"))).message


def test_configured_issuer_and_audience() -> None:
    verifier = TokenVerifier(Settings(auth_secret=SECRET, auth_issuer="idp", auth_audience="app"))
    assert verifier.verify(hs_token(claims(iss="idp", aud="app"))).user_id == "alice"
    rejected(verifier, hs_token(claims()))


@pytest.mark.parametrize("claim", ["exp", "sub", "iss", "aud"])
def test_missing_required_claim(hs: TokenVerifier, claim: str) -> None:
    err = rejected(hs, hs_token(claims(**{claim: None})))
    assert claim in err.message


def test_missing_tenant(hs: TokenVerifier) -> None:
    assert "tenant" in rejected(hs, hs_token(claims(tenant=None))).message


def test_alg_none_rejected(hs: TokenVerifier) -> None:
    rejected(hs, unsigned(claims()))


def test_alg_none_rejected_even_if_listed_in_settings() -> None:
    # Settings cannot allow "none" at all.
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"NEXUS_AUTH_ALGORITHMS": "none"})
    assert info.value.setting == "auth_algorithms"


@pytest.mark.filterwarnings("ignore:The HMAC key is")
@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithm_rejected(hs: TokenVerifier, alg: str) -> None:
    # Right secret, but only HS256 is pinned.
    assert "algorithm" in rejected(hs, hs_token(claims(), alg=alg)).message


def test_hand_signer_matches_pyjwt(hs: TokenVerifier) -> None:
    # The helper used for the confusion attack produces tokens a verifier accepts.
    assert hs.verify(hand_signed_hs256(claims(), SECRET.encode())).user_id == "alice"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        123,
        b"abc",
        "x" * 8193,
        "garbage",
        "a.b.c",
        "a.b",
        "....",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
    ],
)
def test_malformed_tokens(hs: TokenVerifier, token: Any) -> None:
    rejected(hs, token)


@pytest.mark.parametrize(
    "bad",
    [
        {"tenant": "acme corp"},
        {"tenant": "acme/../x"},
        {"tenant": ""},
        {"tenant": "a" * 129},
        {"tenant": 5},
        {"tenant": "nul\x00"},
        {"tenant": "sep\x1f"},
        {"sub": "bad user"},
        {"sub": ""},
        {"roles": "admin"},
        {"roles": {"admin": True}},
        {"roles": ["admin", 1]},
        {"roles": None},
        {"kind": "robot"},
        {"kind": "Human"},
        {"kind": ["human"]},
    ],
    ids=lambda d: repr(d),
)
def test_bad_claims(hs: TokenVerifier, bad: dict[str, Any]) -> None:
    payload = claims()
    payload.update(bad)
    rejected(hs, hs_token(payload))


@pytest.mark.parametrize("claim", ["tenant", "sub"])
def test_id_with_trailing_newline_rejected(hs: TokenVerifier, claim: str) -> None:
    # `$` alone would match before a final newline; ids go into storage keys.
    rejected(hs, hs_token(claims(**{claim: "acme\n"})))


def test_no_secret_configured(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TokenVerifier(Settings(data_dir=str(tmp_path)))


# -- RS256 and algorithm confusion ---------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def public_key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "public.pem"
    path.write_bytes(public_pem(rsa_key))
    return path


@pytest.fixture
def rs(public_key_file: Path) -> TokenVerifier:
    return TokenVerifier(
        load_settings(
            environ={
                "NEXUS_AUTH_ALGORITHMS": "RS256",
                "NEXUS_AUTH_PUBLIC_KEY_FILE": str(public_key_file),
            }
        )
    )


def rs_token(payload: dict[str, Any], key: rsa.RSAPrivateKey, kid: str | None = None) -> str:
    return jwt.encode(
        payload, private_pem(key), algorithm="RS256", headers={"kid": kid} if kid else None
    )


def test_rs256_valid(rs: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    p = rs.verify(rs_token(claims(kind="agent", roles=["admin"]), rsa_key))
    assert principal_fields(p) == ("alice", "acme", frozenset({"admin"}), "agent")


def test_rs256_other_key_rejected(rs: TokenVerifier) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rejected(rs, rs_token(claims(), other))


def test_rs256_expired(rs: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    assert "expired" in rejected(rs, rs_token(claims(exp=int(time.time() - 5)), rsa_key)).message


def test_hs_rs_confusion_rejected(rs: TokenVerifier, public_key_file: Path) -> None:
    # The attacker knows the public key and uses its PEM text as an HMAC secret.
    pem = public_key_file.read_bytes()
    forged = hand_signed_hs256(claims(roles=["admin"]), pem)
    rejected(rs, forged)
    rejected(rs, hand_signed_hs256(claims(), pem.strip()))


def test_alg_none_rejected_by_rs256(rs: TokenVerifier) -> None:
    rejected(rs, unsigned(claims()))


# -- JWKS --------------------------------------------------------------------


@pytest.fixture
def jwks(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> TokenVerifier:
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update(kid="key-1", use="sig", alg="RS256")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}), "utf-8")
    return TokenVerifier(
        load_settings(
            environ={
                "NEXUS_AUTH_ALGORITHMS": "RS256",
                "NEXUS_AUTH_JWKS_FILE": str(path),
            }
        )
    )


def test_jwks_known_kid(jwks: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    assert jwks.verify(rs_token(claims(sub="carol"), rsa_key, kid="key-1")).user_id == "carol"


def test_jwks_unknown_kid(jwks: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    err = rejected(jwks, rs_token(claims(), rsa_key, kid="key-2"))
    assert "unknown signing key" in err.message


def test_jwks_missing_kid(jwks: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    rejected(jwks, rs_token(claims(), rsa_key))


def test_jwks_known_kid_wrong_key(jwks: TokenVerifier) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rejected(jwks, rs_token(claims(), other, kid="key-1"))


def test_jwks_alg_none_with_known_kid(jwks: TokenVerifier) -> None:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": "key-1"}).encode())
    rejected(jwks, f"{header}.{b64url(json.dumps(claims()).encode())}.")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "e30.e30.", "W10.e30."])
def test_jwks_malformed_token(jwks: TokenVerifier, token: str) -> None:
    rejected(jwks, token)


# -- development secret ----------------------------------------------------------


def test_resolve_hmac_secret_creates_private_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data" / "nested"))
    assert resolve_hmac_secret(settings) is None
    secret = resolve_hmac_secret(settings, create=True)
    assert secret is not None and len(secret) >= 32
    path = tmp_path / "data" / "nested" / DEV_SECRET_FILE
    assert path.read_text("utf-8") == secret
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert resolve_hmac_secret(settings, create=True) == secret
    assert resolve_hmac_secret(settings) == secret
    # The verifier picks up the same secret.
    token = mint_token(secret, user="dev", tenant="local")
    assert TokenVerifier(settings).verify(token).user_id == "dev"


def test_resolve_hmac_secret_prefers_configured(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), auth_secret=SECRET)
    assert resolve_hmac_secret(settings, create=True) == SECRET
    assert not (tmp_path / DEV_SECRET_FILE).exists()


def test_resolve_hmac_secret_from_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET + "\n", "utf-8")
    settings = Settings(data_dir=str(tmp_path), auth_secret_file=str(path))
    assert resolve_hmac_secret(settings) == SECRET
    assert TokenVerifier(settings).verify(hs_token(claims())).user_id == "alice"


def test_principals_share_role_sets_and_tenant(hs: TokenVerifier) -> None:
    # Per-connection memory: equal role sets and tenants are one object, not one per token.
    a = hs.verify(hs_token(claims(sub="ann", roles=["member", "admin"])))
    b = hs.verify(hs_token(claims(sub="ben", roles=["admin", "member"])))
    assert a.roles is b.roles and a.roles == frozenset({"member", "admin"})
    assert a.tenant is b.tenant
    c = hs.verify(hs_token(claims(sub="cy", roles=["member"])))
    assert c.roles == frozenset({"member"}) and c.roles is not a.roles
