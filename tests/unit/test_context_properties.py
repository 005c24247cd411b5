"""Properties of context assembly over generated rooms, budgets and counters."""

from __future__ import annotations

import copy
import itertools
import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from nexus.core.context import (
    Assembly,
    Budget,
    ContextRequest,
    LogEntry,
    RetrievedItem,
    Summary,
    TokenCounter,
    ToolResult,
    assemble,
    counter_for,
    prompt_tokens,
)
from nexus.core.context.render import entry_line, hidden_reason
from nexus.core.context.tokens import REPLY_PRIMING

AGENT = "bot"
COUNTERS: dict[str, TokenCounter] = {
    "o200k": counter_for("gpt-4o"),
    "cl100k": counter_for("gpt-4"),
    "estimate": counter_for("claude-sonnet-4-5"),
}
props = settings(max_examples=150, deadline=None, database=None)

# Texts come from a fixed pool (one draw each): generation stays cheap, and the pool
# covers what matters to counting (scripts, emoji, code, whitespace, sizes).
WORDS = ["deploy", "the", "cache", "ok", "数据库", "🚀", "p99=47ms", '{"a": 1}', "\n", "  ", "Ünï"]
POOL = [""] + [
    " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(n))
    for i, n in enumerate([1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 4, 6, 9, 17, 40, 70, 120])
]
texts = st.sampled_from(POOL)
senders = st.sampled_from(["ana", "ben", AGENT, "otherbot"])


KINDS = st.sampled_from(
    [("message", False)] * 8
    + [
        ("message", True),
        ("message.edited", False),
        ("message.deleted", False),
        ("tool.call", False),
    ]
)


@st.composite
def entries(draw: st.DrawFn) -> list[LogEntry]:
    n = draw(st.integers(min_value=0, max_value=30))
    seq = draw(st.integers(min_value=1, max_value=50))
    out = []
    for _ in range(n):
        seq += draw(st.integers(min_value=1, max_value=3))
        sender = draw(senders)
        kind, deleted = draw(KINDS)
        out.append(
            LogEntry(
                seq=seq,
                sender=sender,
                sender_kind="agent" if sender.endswith("bot") else "human",
                kind=kind,
                text=draw(texts),
                ts=seq * 1000,
                id=f"m{seq}",
                deleted=deleted,
                target="m1" if kind != "message" else None,
            )
        )
    return out


@st.composite
def requests(draw: st.DrawFn) -> ContextRequest:
    log = draw(entries())
    top = log[-1].seq if log else 10
    where = draw(st.sampled_from(["last", "after", "middle"]))
    if where == "last" and log and log[-1].kind == "message":
        current = log[-1]
    elif where == "middle" and len(log) > 2 and log[len(log) // 2].kind == "message":
        current = log[len(log) // 2]
    else:
        current = LogEntry(top + 1, draw(senders), "human", "message", draw(texts), id="cur")
        log = [*log, current] if draw(st.booleans()) else log
    summaries = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        first = draw(st.integers(min_value=1, max_value=top + 2))
        last = draw(st.integers(min_value=first, max_value=top + 2))
        summaries.append(Summary(first, last, draw(texts)))
    retrieved = [
        RetrievedItem(
            id=draw(st.sampled_from(["a", "b", "c", "d"])),
            text=draw(texts),
            score=draw(st.floats(min_value=0, max_value=1, allow_nan=False)),
            room=draw(st.sampled_from(["", "room", "elsewhere"])),
            first_seq=draw(st.none() | st.integers(min_value=1, max_value=top + 2)),
        )
        for _ in range(draw(st.integers(min_value=0, max_value=5)))
    ]
    tools = [
        ToolResult(
            id=f"call_{i}",
            name=draw(st.sampled_from(["search", "read_file"])),
            text=draw(texts) * draw(st.sampled_from([1, 3, 30])),
            arguments='{"q": "x"}',
            step=draw(st.integers(min_value=0, max_value=1)),
        )
        for i in range(draw(st.integers(min_value=0, max_value=3)))
    ]
    window = draw(st.integers(min_value=50, max_value=3000))
    budget = Budget(
        context_window=window,
        max_output_tokens=draw(st.integers(min_value=0, max_value=window // 2)),
        margin=draw(st.integers(min_value=0, max_value=100)),
        retrieved_share=draw(st.sampled_from([0.0, 0.2, 0.5])),
        tool_share=draw(st.sampled_from([0.25, 0.5, 1.0])),
        min_current_tokens=draw(st.integers(min_value=16, max_value=300)),
    )
    return ContextRequest(
        agent_id=AGENT,
        system=draw(texts),
        current=current,
        budget=budget,
        log=tuple(log),
        pinned=tuple(draw(st.lists(texts, max_size=3))),
        summaries=tuple(summaries),
        retrieved=tuple(retrieved),
        tool_results=tuple(tools),
        room="room",
    )


counters = st.sampled_from(sorted(COUNTERS))


def included(result: Assembly, section: str) -> list[tuple[str, int]]:
    return [(i.ref, i.tokens) for i in result.trace.items if i.section == section and i.included]


def check_the_budget_is_never_exceeded_beyond_the_minimum(
    request: ContextRequest, counter: TokenCounter, result: Assembly
) -> None:
    trace = result.trace
    assert trace.prompt_tokens == prompt_tokens(result.messages, counter)
    assert trace.prompt_tokens <= trace.used  # charges bound the merged prompt
    assert trace.over_budget == (trace.used > trace.input_limit)
    if trace.over_budget:
        # Only the documented minimum: system prompt, current turn, tool calls (as stubs).
        for section in ("pinned", "summaries", "retrieved", "log", "framing"):
            assert included(result, section) == [], section
        (current,) = included(result, "current")
        system = counter.count(request.system) + 4
        # Cut to min_current_tokens of its text, plus the marker and the message overhead.
        marker = counter.count("\n[cut: the message has 1000 tokens]")
        assert current[1] <= request.budget.min_current_tokens + marker + 4
        assert trace.used <= REPLY_PRIMING + system + current[1] + sum(
            t for _, t in included(result, "tools")
        )


def check_the_current_turn_is_always_included_last(
    request: ContextRequest, counter: TokenCounter, result: Assembly
) -> None:
    current = [i for i in result.trace.items if i.section == "current"]
    assert len(current) == 1 and current[0].included
    index = current[0].message
    assert index is not None
    message = result.messages[index]
    assert message.role == "user"
    line = entry_line(request.current)
    if "[cut: the message has" in message.content:
        head = message.content.rsplit("\n[cut: the message has", 1)[0]
        starts = [0] + [i + 2 for i in range(len(head)) if head.startswith("\n\n", i)]
        assert any(line.startswith(head[i:]) and head[i:] for i in starts)
    else:
        assert message.content.endswith(line)
    # After it come only the turn's tool calls and their results.
    assert all(m.role in ("assistant", "tool") for m in result.messages[index + 1 :])
    assert all(m.tool_calls or m.role == "tool" for m in result.messages[index + 1 :])


def check_the_output_is_deterministic(
    request: ContextRequest, counter: TokenCounter, result: Assembly
) -> None:
    first = result
    again = assemble(copy.deepcopy(request), counter)

    def dump(a: Assembly) -> str:
        return json.dumps([[m.as_dict() for m in a.messages], a.trace.as_dict()])

    assert dump(first) == dump(again)


def rendered(request: ContextRequest, seq: int) -> str:
    entry = next(e for e in request.log if e.seq == seq)
    return entry.text if entry.sender == AGENT else entry_line(entry)


def check_entries_are_in_seq_order(
    request: ContextRequest, counter: TokenCounter, result: Assembly
) -> None:
    kept = sorted(
        (int(i.ref[1:]), i.message) for i in result.trace.items if i.section == "log" and i.included
    )
    position = (0, 0)
    for seq, index in kept:
        assert index is not None
        assert seq < request.current.seq
        at = result.messages[index].content.find(
            rendered(request, seq), position[1] if index == position[0] else 0
        )
        assert at >= 0
        assert (index, at) >= position
        position = (index, at + 1)
    (current,) = [i for i in result.trace.items if i.section == "current"]
    assert current.message is not None and current.message >= position[0]


def summary_ranges(result: Assembly) -> list[tuple[int, int]]:
    out = []
    for ref, _ in included(result, "summaries"):
        first, _, last = ref.partition("-")
        out.append((int(first[1:]), int(last[1:]) if last else int(first[1:])))
    return out


def check_summarized_entries_never_appear_twice(
    request: ContextRequest, counter: TokenCounter, result: Assembly
) -> None:
    ranges = summary_ranges(result)
    for a, (f1, l1) in enumerate(ranges):
        assert l1 < request.current.seq
        for f2, l2 in ranges[a + 1 :]:
            assert l1 < f2 or l2 < f1  # included summaries do not overlap
    for ref, _ in included(result, "log"):
        seq = int(ref[1:])
        assert not any(f <= seq <= last for f, last in ranges)


def check_dropping_is_oldest_first(
    request: ContextRequest, counter: TokenCounter, result: Assembly
) -> None:
    ranges = summary_ranges(result)
    eligible = sorted(
        e.seq
        for e in request.log
        if e.seq < request.current.seq
        and hidden_reason(e) is None
        and not any(f <= e.seq <= last for f, last in ranges)
    )
    kept = {int(ref[1:]) for ref, _ in included(result, "log")}
    assert set(eligible[len(eligible) - len(kept) :]) == kept  # a suffix: the newest
    for item in result.trace.items:
        if item.section == "log" and not item.included and int(item.ref[1:]) in eligible:
            assert item.reason == "over budget"


def check_roles_alternate_and_every_call_is_answered(
    request: ContextRequest, counter: TokenCounter, result: Assembly
) -> None:
    messages = list(result.messages)
    if messages and messages[0].role == "system":
        messages = messages[1:]
    assert all(m.role != "system" for m in messages)
    talk = [m for m in messages if not m.tool_calls and m.role != "tool"]
    assert talk[0].role == "user"
    for a, b in itertools.pairwise(talk):
        assert a.role != b.role
    assert all(m.name is None for m in result.messages)  # no name field anywhere
    pending: list[str] = []
    for m in messages[len(talk) :]:
        if m.tool_calls:
            assert not pending
            pending = [c.id for c in m.tool_calls]
        else:
            assert m.role == "tool" and m.tool_call_id == pending.pop(0)
    assert not pending
    assert sorted(c.id for m in messages for c in m.tool_calls) == sorted(
        t.id for t in request.tool_results
    )


def check_retrieved_items_stay_within_their_share(
    request: ContextRequest, counter: TokenCounter, result: Assembly
) -> None:
    sections = {s.section: s for s in result.trace.sections}
    before = REPLY_PRIMING + sum(
        sections[s].tokens for s in ("system", "current", "pinned", "tools", "summaries")
    )
    left = result.trace.input_limit - before
    share = max(math.floor(left * request.budget.retrieved_share), 0)
    assert sections["retrieved"].tokens <= share
    ids = [ref for ref, _ in included(result, "retrieved")]
    assert len(ids) == len(set(ids))


CHECKS = [f for n, f in sorted(globals().items()) if n.startswith("check_")]


@props
@given(request=requests(), name=counters)
def test_assembly_properties(request: ContextRequest, name: str) -> None:
    """Every property on every generated request (one generation serves all checks)."""
    counter = COUNTERS[name]
    result = assemble(request, counter)
    for check in CHECKS:
        check(request, counter, result)


def test_every_property_is_checked() -> None:
    assert len(CHECKS) == 8
