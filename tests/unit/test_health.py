"""Readiness: draining first, then every registered check; liveness never looks at them."""

from __future__ import annotations

from nexus.observability.health import Health


def test_ready_with_every_check_passing_names_them() -> None:
    health = Health()
    health.add_check("store", lambda: True)
    health.add_check("engine", lambda: True)
    assert health.ready() == (200, {"status": "ready", "checks": ["engine", "store"]})


def test_a_failing_check_makes_it_unready_but_still_alive() -> None:
    health = Health()
    health.add_check("store", lambda: True)
    health.add_check("engine", lambda: False)  # e.g. the broker connection is lost
    assert health.ready() == (503, {"status": "unready", "failing": ["engine"]})
    assert health.live() == (200, {"status": "ok"})


def test_draining_wins_over_the_checks() -> None:
    health = Health()
    health.add_check("store", lambda: False)
    health.draining = True
    assert health.ready() == (503, {"status": "draining"})
    assert health.live()[0] == 200
