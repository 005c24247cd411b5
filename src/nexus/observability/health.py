"""Liveness and readiness, answered the same on the WebSocket and the HTTP port."""

from __future__ import annotations

from typing import Any


class Health:
    def __init__(self) -> None:
        self.draining = False  # set at the start of a graceful shutdown

    @staticmethod
    def live() -> tuple[int, dict[str, Any]]:
        """The loop runs (it answers): 200, also while draining."""
        return 200, {"status": "ok"}

    def ready(self) -> tuple[int, dict[str, Any]]:
        if self.draining:
            return 503, {"status": "draining"}
        return 200, {"status": "ready"}
