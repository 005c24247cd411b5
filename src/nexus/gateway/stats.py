"""Plain counters the gateway's connections update and the metrics scrape reads."""

from __future__ import annotations


class GatewayStats:
    __slots__ = (
        "connections",
        "auth_failures",
        "bytes_in",
        "frames_in",
        "rate_limited",
        "slow_consumers",
        "forced_disconnects",
        "pings_refused",
        "refused_closes",
        "floods",
    )

    def __init__(self) -> None:
        self.connections = 0  # accepted since start
        self.auth_failures: dict[str, int] = {}
        self.bytes_in = 0
        self.frames_in = 0
        self.rate_limited = 0  # WebSocket requests refused with rate_limited
        self.slow_consumers = 0
        self.forced_disconnects = 0
        self.pings_refused = 0  # WebSocket PINGs over the rate, left unanswered
        self.refused_closes = 0  # connections closed 4004 for refused frames
        self.floods = 0  # connections closed 4004 for too many frames in one read

    def auth_failed(self, reason: str) -> None:
        self.auth_failures[reason] = self.auth_failures.get(reason, 0) + 1
