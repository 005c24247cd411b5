"""Liveness and readiness, answered the same on the WebSocket and the HTTP port.

Liveness says only that the loop answers: it never consults a dependency, so a slow disk
or a lost broker makes the pod unready, never restarted. Readiness is "not draining and
every registered check passes". The composition root registers ``store`` (the LMDB
environment is open); the scale-out engine registers ``engine`` (connected to its broker)
the same way, so an orchestrator routes no client to a node that cannot serve it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ReadinessCheck = Callable[[], bool]


class Health:
    def __init__(self) -> None:
        self.draining = False  # set at the start of a graceful shutdown (or by SIGUSR1)
        self._checks: dict[str, ReadinessCheck] = {}

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        """Make readiness depend on ``check()`` (cheap, non-blocking, called per probe)."""
        self._checks[name] = check

    @staticmethod
    def live() -> tuple[int, dict[str, Any]]:
        """The loop runs (it answers): 200, also while draining."""
        return 200, {"status": "ok"}

    def ready(self) -> tuple[int, dict[str, Any]]:
        if self.draining:
            return 503, {"status": "draining"}
        failing = [name for name, check in self._checks.items() if not check()]
        if failing:
            return 503, {"status": "unready", "failing": failing}
        return 200, {"status": "ready", "checks": sorted(self._checks)}
