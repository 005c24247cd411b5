"""The task model and the reminder schedule, pure: state machines as properties, fire
times read with an injected clock (no loop, no sleeps)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nexus.core.tasks.model import (
    RUN_STATES,
    RUN_TERMINAL,
    STATES,
    TERMINAL,
    change,
    fire_times,
    may_run_transition,
    new_task,
    validate,
)
from nexus.core.tasks.schedule import ReminderSchedule
from nexus.errors import BadRequest, Conflict

T0 = 1_700_000_000_000


def task(**fields: object) -> dict[str, object]:
    return new_task("t1", "room", {"title": "Ship it", **fields}, by="ann", now_ms=T0)


@given(st.lists(st.sampled_from(STATES), min_size=1, max_size=30))
def test_no_state_leaves_a_terminal_one_and_versions_strictly_increase(
    steps: list[str],
) -> None:
    current = task()
    for i, state in enumerate(steps):
        before = current
        try:
            current, _ = change(current, {"state": state}, by="bob", now_ms=T0 + i)
        except Conflict:
            assert before["state"] in TERMINAL and state != before["state"]
            continue
        assert current["version"] == before["version"] + 1
        if before["state"] in TERMINAL:
            assert current["state"] == before["state"]


@given(st.lists(st.sampled_from(RUN_STATES), min_size=1, max_size=20))
def test_runs_never_leave_a_terminal_state(steps: list[str]) -> None:
    current = task()
    state: str | None = None
    for new in ["submitted", *steps]:
        before = current
        try:
            current, _ = change(current, {}, by="bot", now_ms=T0, run={"id": "r1", "state": new})
        except Conflict:
            assert state is not None and (
                state in RUN_TERMINAL or not may_run_transition(state, new)
            )
            continue
        assert state not in RUN_TERMINAL  # nothing follows a terminal run state
        assert current["version"] == before["version"] + 1
        state = new
        assert current["run"]["state"] == new
    with pytest.raises(Conflict):  # another run while this one is open
        if state not in RUN_TERMINAL:
            change(current, {}, by="bot", now_ms=T0, run={"id": "r2", "state": "submitted"})
        else:
            raise Conflict("terminal: a new run may start instead")


def test_validation_refuses_what_cannot_be_stored() -> None:
    with pytest.raises(BadRequest):
        validate({"title": ""}, creating=True)
    with pytest.raises(BadRequest):
        validate({"state": "doing"}, creating=False)
    with pytest.raises(BadRequest):
        validate({"titel": "typo"}, creating=False)
    with pytest.raises(BadRequest):
        validate({"description": "no title"}, creating=True)
    assert validate({"reminders": [3, 1, 3]}, creating=False) == {"reminders": [1, 3]}
    with pytest.raises(BadRequest):
        new_task("t", "r", {"title": "x", "state": "done"}, by="a", now_ms=0)


def test_reminders_fire_once_in_time_order_with_an_injected_clock() -> None:
    sched = ReminderSchedule()
    t = task(reminders=[T0 + 2000, T0 + 1000], due=T0 + 3000)
    sched.set_task(t)
    assert sched.next_at() == T0 + 1000
    assert sched.due(T0 + 999) == []
    first = sched.due(T0 + 1500)
    assert [f.key for f in first] == [f"reminder.t1.{T0 + 1000}"]
    assert sched.due(T0 + 1500) == []  # in flight: not handed out twice
    sched.mark_fired(first[0].key)
    late = sched.due(T0 + 10_000)  # the server was "down": both remaining fire now, once
    assert [(f.kind, f.at) for f in late] == [("reminder", T0 + 2000), ("due", T0 + 3000)]
    for f in late:
        sched.mark_fired(f.key)
    assert sched.due(T0 + 20_000) == [] and sched.next_at() is None


def test_a_restart_rebuilds_the_schedule_without_what_fired() -> None:
    t = task(reminders=[T0 + 1000, T0 + 2000])
    fired = [f"reminder.t1.{T0 + 1000}"]
    sched = ReminderSchedule()  # a fresh process: the fired marks come from the log
    sched.set_task(t, fired)
    assert [f.at for f in sched.due(T0 + 5000)] == [T0 + 2000]


def test_moving_or_finishing_a_task_reschedules_it() -> None:
    sched = ReminderSchedule()
    t = task(reminders=[T0 + 1000])
    sched.set_task(t)
    moved, _ = change(t, {"reminders": [T0 + 5000]}, by="a", now_ms=T0)
    sched.set_task(moved)
    assert sched.due(T0 + 2000) == []
    assert [f.at for f in sched.due(T0 + 5000)] == [T0 + 5000]
    sched.release(f"reminder.t1.{T0 + 5000}")  # its write failed
    done, _ = change(moved, {"state": "done"}, by="a", now_ms=T0)
    sched.set_task(done)
    assert fire_times(done) == [] and sched.next_at() is None


def test_a_failed_fire_is_retried() -> None:
    sched = ReminderSchedule()
    sched.set_task(task(reminders=[T0]))
    (fire,) = sched.due(T0)
    sched.retry(fire)
    assert sched.due(T0) == [fire]
