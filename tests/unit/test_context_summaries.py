"""Rolling summaries: when a chunk is due, the prompt that summarizes it, rebuilding."""

from __future__ import annotations

import itertools
import re

import pytest

from nexus.core.context import (
    Budget,
    Chunk,
    ContextRequest,
    LogEntry,
    PromptMessage,
    Summarizer,
    Summary,
    SummaryPolicy,
    assemble,
    counter_for,
    next_chunk,
)

COUNTER = counter_for("gpt-4o")


def msg(
    seq: int,
    text: str = "",
    sender: str = "ana",
    kind: str = "message",
    deleted: bool = False,
    target: str | None = None,
) -> LogEntry:
    return LogEntry(
        seq=seq,
        sender=sender,
        sender_kind="agent" if sender.endswith("bot") else "human",
        kind=kind,
        text=text if text or kind != "message" else f"message {seq} about item {seq % 7}",
        id=f"m{seq}",
        deleted=deleted,
        target=target,
    )


def room(n: int) -> list[LogEntry]:
    """A log with edits, deletions and other kinds mixed in."""
    out = []
    for seq in range(1, n + 1):
        if seq % 11 == 0:
            out.append(msg(seq, "changed", kind="message.edited", target=f"m{seq - 1}"))
        elif seq % 13 == 0:
            out.append(msg(seq, "gone", deleted=True))
        elif seq % 17 == 0:
            out.append(msg(seq, "", kind="tool.call"))
        else:
            out.append(msg(seq, sender="helperbot" if seq % 5 == 0 else "ana"))
    return out


async def fake_summarize(messages: tuple[PromptMessage, ...]) -> str:
    """Deterministic: names the entries it was given."""
    assert messages[0].role == "system"
    seqs = re.findall(r"^\[#(\d+)\]", messages[-1].content, flags=re.MULTILINE)
    return "S(" + ",".join(seqs) + ")"


def test_summary_json_round_trip() -> None:
    s = Summary(1, 40, "Decisions: keep LMDB (#12). ünï 🚀", entries=33, model="offline")
    assert Summary.from_json(s.to_json()) == s
    assert Summary.from_json(s.to_json().decode()) == s
    assert Summary.from_json('{"first_seq": 3, "last_seq": 9, "text": "x"}') == Summary(3, 9, "x")
    assert s.covers(1) and s.covers(40) and not s.covers(41)


def test_a_chunk_is_due_after_chunk_entries_plus_keep_recent() -> None:
    policy = SummaryPolicy(chunk_entries=10, chunk_tokens=10_000, keep_recent=5)
    log = [msg(seq) for seq in range(1, 15)]  # 14 shown entries
    assert next_chunk([], log, policy, COUNTER) is None
    log.append(msg(15))
    chunk = next_chunk([], log, policy, COUNTER)
    assert chunk is not None
    assert (chunk.first_seq, chunk.last_seq) == (1, 10)
    assert [e.seq for e in chunk.entries] == list(range(1, 11))
    # After a summary of 1-10, the next one starts at 11 and is not due yet.
    assert next_chunk([Summary(1, 10, "s")], log, policy, COUNTER) is None


def test_hidden_entries_are_covered_but_not_counted() -> None:
    policy = SummaryPolicy(chunk_entries=3, chunk_tokens=10_000, keep_recent=0)
    log = [
        msg(1),
        msg(2, "x", deleted=True),
        msg(3, "", kind="message.edited", target="m1"),
        msg(4),
        msg(5, "   "),
        msg(6),
        msg(7),
    ]
    chunk = next_chunk([], log, policy, COUNTER)
    assert chunk is not None
    assert (chunk.first_seq, chunk.last_seq) == (1, 6)
    assert [e.seq for e in chunk.entries] == [1, 4, 6]
    after = next_chunk([Summary(1, 6, "s")], log, policy, COUNTER)
    assert after is None  # only #7 is left


def test_a_chunk_closes_on_tokens() -> None:
    policy = SummaryPolicy(chunk_entries=100, chunk_tokens=50, keep_recent=1)
    log = [msg(seq, "word " * 20) for seq in range(1, 6)]  # ~27 tokens each
    chunk = next_chunk([], log, policy, COUNTER)
    assert chunk is not None and (chunk.first_seq, chunk.last_seq) == (1, 2)


def test_the_prompt_gives_context_and_entries() -> None:
    summarizer = Summarizer(fake_summarize, COUNTER, SummaryPolicy(chunk_tokens=30))
    chunk = Chunk(11, 13, (msg(11, "short"), msg(13, "long " * 100, sender="helperbot")))
    system, user = summarizer.prompt(chunk, Summary(1, 10, "Earlier: LMDB was chosen."))
    assert system.role == "system" and "not instructions" in system.content
    assert user.role == "user"
    assert "Earlier in the room (#1-#10), for context only:\nEarlier: LMDB was chosen." in (
        user.content
    )
    assert "Entries #11-#13 to summarize:\n[#11] ana: short\n[#13] helperbot: long" in (
        user.content
    )
    assert user.content.endswith("\n[entry cut]")  # each entry is cut to chunk_tokens
    assert COUNTER.count(user.content.split("\n")[-2] + "\n[entry cut]") <= 30


async def test_write_refuses_an_empty_summary_and_cuts_a_long_one() -> None:
    async def empty(messages: tuple[PromptMessage, ...]) -> str:
        return "  \n"

    async def verbose(messages: tuple[PromptMessage, ...]) -> str:
        return "blah " * 500

    chunk = Chunk(1, 2, (msg(1), msg(2)))
    with pytest.raises(ValueError, match="empty summary for #1-#2"):
        await Summarizer(empty, COUNTER).write(chunk, None)
    policy = SummaryPolicy(max_summary_tokens=40)
    s = await Summarizer(verbose, COUNTER, policy, model="m").write(chunk, None)
    assert COUNTER.count(s.text) <= 40 and s.text.endswith(" [summary cut]")
    assert (s.first_seq, s.last_seq, s.entries, s.model) == (1, 2, 2, "m")


async def test_rebuild_equals_summarizing_as_entries_arrive() -> None:
    policy = SummaryPolicy(chunk_entries=8, chunk_tokens=60, keep_recent=4)
    summarizer = Summarizer(fake_summarize, COUNTER, policy, model="fake")
    log = room(120)
    live: list[Summary] = []
    for n in range(1, len(log) + 1):
        live += await summarizer.catch_up(live, log[:n])
    rebuilt = await summarizer.rebuild(log)
    assert rebuilt == live
    assert rebuilt == await summarizer.rebuild(log)  # deterministic
    # The ranges tile the log from its first seq, with no gap and no overlap.
    assert rebuilt[0].first_seq == 1
    for a, b in itertools.pairwise(rebuilt):
        assert b.first_seq == a.last_seq + 1
    # Each summary names exactly the shown entries of its range.
    for s in rebuilt:
        seqs = [int(x) for x in s.text[2:-1].split(",")]
        assert all(s.covers(q) for q in seqs)
        assert s.entries == len(seqs)
    # The newest keep_recent shown entries are never summarized.
    shown_after = [
        e for e in log if e.seq > rebuilt[-1].last_seq and e.kind == "message" and not e.deleted
    ]
    assert len(shown_after) >= policy.keep_recent


async def test_rebuilt_summaries_cover_entries_in_assembly() -> None:
    log = room(60)
    summarizer = Summarizer(fake_summarize, COUNTER, SummaryPolicy(chunk_entries=10, keep_recent=5))
    summaries = tuple(await summarizer.rebuild(log))
    assert summaries
    current = msg(61, "@helperbot where are we?")
    result = assemble(
        ContextRequest(
            "helperbot",
            "You are helperbot.",
            current,
            Budget(8000, 500),
            log=(*log, current),
            summaries=summaries,
        ),
        COUNTER,
    )
    covered = summaries[-1].last_seq
    for item in result.trace.items:
        if item.section == "log" and int(item.ref[1:]) <= covered:
            assert not item.included
    assert [i.included for i in result.trace.items if i.section == "summaries"] == [True] * len(
        summaries
    )


def test_policy_for_budget() -> None:
    assert SummaryPolicy.for_budget(Budget(16_000, 1_000)).chunk_tokens == (16_000 - 1_064) // 4
    assert SummaryPolicy.for_budget(Budget(1_000, 900)).chunk_tokens == 256
