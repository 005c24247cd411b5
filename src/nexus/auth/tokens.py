"""JWT verification with pinned algorithms, and minting for development and tests.

Claims: ``sub`` (user id), ``tenant``, ``roles`` (list of strings), ``kind``
(``human`` | ``agent``), ``exp`` (required), ``nbf``, ``iat``, ``iss``, ``aud``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import jwt

from ..config import HMAC_ALGORITHMS, Settings, read_secret_file
from ..errors import Unauthorized
from .principal import ID_PATTERN, Principal

log = logging.getLogger(__name__)

DEV_SECRET_FILE = "dev-secret"


def resolve_hmac_secret(settings: Settings, *, create: bool = False) -> str | None:
    """The HMAC secret: configured, from a file, or the development one under data_dir.

    With ``create`` a random development secret is written (mode 0600) when none exists.
    """
    if settings.auth_secret:
        return settings.auth_secret
    if settings.auth_secret_file:
        return read_secret_file(settings.auth_secret_file)
    path = settings.data_path / DEV_SECRET_FILE
    if path.is_file():
        return read_secret_file(path)
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return secret


class TokenVerifier:
    """Verifies bearer tokens into Principals; every failure is ``Unauthorized`` with a reason."""

    def __init__(self, settings: Settings, *, hmac_secret: str | None = None) -> None:
        self._algorithms = list(settings.auth_algorithms)
        self._issuer = settings.auth_issuer
        self._audience = settings.auth_audience
        self._leeway = settings.auth_leeway
        self._key: Any = None
        self._jwks: jwt.PyJWKSet | None = None
        if set(self._algorithms) & HMAC_ALGORITHMS:
            secret = hmac_secret or resolve_hmac_secret(settings)
            if not secret:
                raise ValueError("no HMAC secret configured")
            self._key = secret
        elif settings.auth_jwks_file:
            data = json.loads(Path(settings.auth_jwks_file).read_text("utf-8"))
            self._jwks = jwt.PyJWKSet.from_dict(data)
        else:
            assert settings.auth_public_key_file
            self._key = Path(settings.auth_public_key_file).read_text("utf-8")

    def _key_for(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._jwks.keys:
            if key.key_id == kid:
                return key.key
        raise Unauthorized("unknown signing key")

    def verify(self, token: str) -> Principal:
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise Unauthorized("missing or oversized token")
        try:
            claims = jwt.decode(
                token,
                self._key_for(token),
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "iss", "aud"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("wrong issuer") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthorized("algorithm not allowed") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("bad signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"missing claim: {exc.claim}") from None
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        except Unauthorized:
            raise
        except Exception:  # whatever a crafted token trips in the library is still a 401
            log.warning("token verification failed unexpectedly", exc_info=True)
            raise Unauthorized("malformed token") from None
        return principal_from_claims(claims)


# Idle connections are mostly their principal: share the few distinct role sets and the
# tenant/kind strings between principals instead of keeping one copy per token.
_ROLE_SETS: dict[tuple[str, ...], frozenset[str]] = {}
_ROLE_SETS_MAX = 4096


def _role_set(roles: list[str]) -> frozenset[str]:
    key = tuple(sorted(roles))
    shared = _ROLE_SETS.get(key)
    if shared is None:
        if len(_ROLE_SETS) >= _ROLE_SETS_MAX:
            _ROLE_SETS.clear()
        shared = _ROLE_SETS[key] = frozenset(sys.intern(r) for r in key)
    return shared


TIME_CLAIMS = ("exp", "nbf", "iat")
MAX_TIME = 2.0**53  # beyond this a float loses whole seconds


def _numeric_time(value: object) -> bool:
    """RFC 7519 NumericDate: a JSON number. pyjwt also accepts numeric strings ("123")."""
    if type(value) is int:  # a 400-digit int is an int too: compare, never convert
        return abs(value) < MAX_TIME
    return type(value) is float and math.isfinite(value) and abs(value) < MAX_TIME


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    # Checked after the signature and pyjwt's own time checks, which coerce strings and
    # let NaN and Infinity through: a session must never be "without expiry" by accident.
    for name in TIME_CLAIMS:
        if name in claims and not _numeric_time(claims[name]):
            raise Unauthorized(f"{name} must be a number")
    sub, tenant = claims.get("sub"), claims.get("tenant")
    roles, kind = claims.get("roles", []), claims.get("kind", "human")
    if not isinstance(sub, str) or not ID_PATTERN.fullmatch(sub):
        raise Unauthorized("invalid sub claim")
    if not isinstance(tenant, str) or not ID_PATTERN.fullmatch(tenant):
        raise Unauthorized("invalid or missing tenant claim")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthorized("invalid roles claim")
    if kind not in ("human", "agent"):
        raise Unauthorized("invalid kind claim")
    if "exp" not in claims:
        raise Unauthorized("missing claim: exp")
    return Principal(
        user_id=sub,
        tenant=sys.intern(tenant),
        roles=_role_set(roles),
        kind="human" if kind == "human" else "agent",
        expires_at=float(claims["exp"]),
    )


def mint_token(
    key: Any,
    *,
    user: str,
    tenant: str,
    roles: list[str] | tuple[str, ...] = ("member",),
    kind: str = "human",
    ttl: float = 3600.0,
    issuer: str = "nexus",
    audience: str = "nexus",
    algorithm: str = "HS256",
    not_before: float | None = None,
    kid: str | None = None,
    now: float | None = None,
) -> str:
    """Sign a token with ``key`` (HMAC secret or PEM private key)."""
    now = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": user,
        "tenant": tenant,
        "roles": list(roles),
        "kind": kind,
        "iat": int(now),
        "exp": int(now + ttl),
        "iss": issuer,
        "aud": audience,
    }
    if not_before is not None:
        claims["nbf"] = int(not_before)
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)
