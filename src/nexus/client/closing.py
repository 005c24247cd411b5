"""What a close code means for a client (docs/protocol.md §11): reconnect or stop."""

from __future__ import annotations

# Codes the server sends for client bugs: reconnecting would only repeat them.
_CLIENT_BUGS = frozenset({1002, 1003, 1007, 1009, 1010})


def may_reconnect(code: int | None) -> bool:
    """4000-4499 and transport trouble (no code, 1001, 1006, 1011-1014): reconnect with
    backoff. 4500-4999 (bad token, forced by an administrator) and the codes of protocol
    violations: stop. 1000 is a normal close: stop."""
    if code is None:
        return True  # the connection broke without a close frame
    if 4000 <= code <= 4499:
        return True
    if 4500 <= code <= 4999:
        return False
    return code != 1000 and code not in _CLIENT_BUGS


def needs_new_token(code: int | None) -> bool:
    """4003: the token expired on an open session; a refreshed one may reconnect."""
    return code == 4003
