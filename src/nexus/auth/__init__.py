"""Authentication: JWT verification and the principals it yields."""

from .principal import Principal, PrincipalKind
from .tokens import TokenVerifier, mint_token, resolve_hmac_secret

__all__ = ["Principal", "PrincipalKind", "TokenVerifier", "mint_token", "resolve_hmac_secret"]
