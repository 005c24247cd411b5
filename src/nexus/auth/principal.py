"""Who is on the other end of a connection or request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

PrincipalKind = Literal["human", "agent", "plugin"]

# Tenant and user ids go into storage keys: keep them to a safe alphabet.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.@:+-]{1,128}$")


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    tenant: str
    roles: frozenset[str]
    kind: PrincipalKind = "human"
    expires_at: float = 0.0  # the token's exp (unix seconds); 0 = no expiry

    def has_any_role(self, roles: tuple[str, ...] | frozenset[str]) -> bool:
        return not self.roles.isdisjoint(roles)
