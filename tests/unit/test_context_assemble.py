"""Context assembly, case by case (the golden files show whole prompts; the properties
file checks the invariants over generated rooms)."""

from __future__ import annotations

import dataclasses
from typing import Any

from nexus.core.context import (
    Assembly,
    Budget,
    ContextRequest,
    LogEntry,
    PromptMessage,
    PromptToolCall,
    RetrievedItem,
    Summary,
    ToolResult,
    assemble,
    counter_for,
)

COUNTER = counter_for("gpt-4o")
BIG = Budget(16_000, 1_000)


def msg(seq: int, text: str, sender: str = "ana") -> LogEntry:
    kind = "agent" if sender.endswith("bot") else "human"
    return LogEntry(seq, sender, kind, "message", text, id=f"m{seq}")


def run(current: LogEntry, budget: Budget = BIG, **fields: Any) -> Assembly:
    request = ContextRequest("bot", "You are bot.", current, budget)
    return assemble(dataclasses.replace(request, **fields), COUNTER)


def reasons(result: Assembly, section: str) -> dict[str, str]:
    return {i.ref: i.reason for i in result.trace.items if i.section == section}


def test_a_lone_current_turn() -> None:
    result = run(msg(1, "hello"))
    assert result.messages == (
        PromptMessage("system", "You are bot."),
        PromptMessage("user", "[#1] ana: hello"),
    )
    assert result.trace.prompt_tokens == result.trace.used


def test_no_system_message_when_there_is_nothing_to_say() -> None:
    result = run(msg(1, "hello"), system="")
    assert [m.role for m in result.messages] == ["user"]
    result = run(msg(1, "hello"), system="", pinned=("Only English.",))
    assert result.messages[0] == PromptMessage("system", "Only English.")


def test_duplicate_and_later_entries_are_left_out() -> None:
    log = (msg(1, "a"), msg(2, "b"), msg(2, "b again"), msg(3, "now"), msg(4, "later"))
    result = run(log[3], log=log)
    assert reasons(result, "log") == {
        "#4": "after the current turn",
        "#3": "the current turn",
        "#2": "duplicate",
        "#1": "fits",
    }


def test_summaries_that_overlap_or_reach_the_current_turn_are_left_out() -> None:
    log = tuple(msg(i, f"m{i}") for i in range(1, 11))
    summaries = (Summary(1, 4, "one"), Summary(3, 6, "overlap"), Summary(5, 10, "too late"))
    result = run(log[-1], log=log, summaries=summaries)
    assert reasons(result, "summaries") == {
        "#5-#10": "reaches the current turn",
        "#3-#6": "fits",
        "#1-#4": "overlaps summary #3-#6",
    }
    assert reasons(result, "log")["#4"] == "covered by summary #3-#6"
    assert reasons(result, "log")["#2"] == "fits"  # the overlapping summary was not used


def test_summaries_stop_at_the_first_that_does_not_fit() -> None:
    log = tuple(msg(i, f"m{i}") for i in range(1, 31))
    summaries = (Summary(1, 10, "short"), Summary(11, 20, "long " * 300))
    budget = Budget(400, 100, margin=0)
    result = run(log[-1], budget, log=log, summaries=summaries)
    assert reasons(result, "summaries") == {"#11-#20": "over budget", "#1-#10": "over budget"}


def test_retrieved_items() -> None:
    log = tuple(msg(i, f"m{i}") for i in range(5, 11))
    retrieved = (
        RetrievedItem("low", "low score", 0.1, "elsewhere", 1, 2),
        RetrievedItem("here", "already in the slice", 0.9, "r", 6, 7),
        RetrievedItem("old", "older than the slice", 0.8, "r", 1, 3),
        RetrievedItem("dup", "older than the slice", 0.7),
        RetrievedItem("none", "no source", 0.5),
    )
    result = run(log[-1], log=log, retrieved=retrieved, room="r")
    assert reasons(result, "retrieved") == {
        "here": "in the log slice (#6-#7)",
        "old": "score 0.8",
        "dup": "duplicate text",
        "none": "score 0.5",
        "low": "score 0.1",
    }
    opener = result.messages[1]
    assert opener.content.startswith(
        "[memory old, r #1-#3]\nolder than the slice\n\n[memory none]\nno source\n\n"
        "[memory low, elsewhere #1-#2]\nlow score\n\n[#5] ana: m5"
    )


def test_a_nan_score_ranks_last() -> None:
    retrieved = (
        RetrievedItem("nan", "x", float("nan")),
        RetrievedItem("b", "y", 0.1),
        RetrievedItem("a", "z", 0.1),
    )
    result = run(msg(1, "q"), retrieved=retrieved)
    assert [i.ref for i in result.trace.items if i.section == "retrieved"] == ["a", "b", "nan"]


def test_the_retrieved_share_caps_memories() -> None:
    retrieved = tuple(RetrievedItem(f"m{i}", f"fact {i} " * 60, 1 - i / 10) for i in range(5))
    result = run(msg(1, "q"), Budget(1_000, 0, margin=0, retrieved_share=0.2), retrieved=retrieved)
    included = [i for i in result.trace.items if i.section == "retrieved" and i.included]
    assert [i.ref for i in included] == ["m0"]  # ~130 tokens each, ~195 allowed
    assert reasons(result, "retrieved")["m1"].startswith("over the retrieved share")
    result = run(msg(1, "q"), Budget(1_000, 0, margin=0, retrieved_share=0.0), retrieved=retrieved)
    assert not any(i.included for i in result.trace.items if i.section == "retrieved")


def test_the_agents_own_messages_are_assistant_messages_and_merge() -> None:
    log = (msg(1, "hi", "ana"), msg(2, "Hello!", "bot"), msg(3, "How can I help?", "bot"))
    current = msg(4, "@bot and other bots?", "ana")
    other = msg(5, "I am otherbot.", "otherbot")
    result = run(current, log=(*log, current, other))
    assert result.messages[1:] == (
        PromptMessage("user", "[#1] ana: hi"),
        PromptMessage("assistant", "Hello!\n\nHow can I help?"),
        PromptMessage("user", "[#4] ana: @bot and other bots?"),
    )
    result = run(other, log=(*log, current, other))
    assert result.messages[-1] == PromptMessage(
        "user", "[#4] ana: @bot and other bots?\n\n[#5] otherbot: I am otherbot."
    )


def test_tool_results_shorter_than_their_stub_and_steps() -> None:
    tools = (
        ToolResult("c1", "clock", "12:00", "{}", step=0),
        ToolResult("c2", "search", "", '{"q": "x"}', step=1),
        ToolResult("c3", "search", "found", '{"q": "y"}', step=1),
    )
    result = run(msg(1, "time?"), tool_results=tools)
    assert result.messages[2:] == (
        PromptMessage("assistant", "", tool_calls=(PromptToolCall("c1", "clock", "{}"),)),
        PromptMessage("tool", "12:00", tool_call_id="c1"),
        PromptMessage(
            "assistant",
            "",
            tool_calls=(
                PromptToolCall("c2", "search", '{"q": "x"}'),
                PromptToolCall("c3", "search", '{"q": "y"}'),
            ),
        ),
        PromptMessage("tool", "", tool_call_id="c2"),
        PromptMessage("tool", "found", tool_call_id="c3"),
    )
    assert reasons(result, "tools") == {"c1": "fits", "c2": "fits", "c3": "fits"}
    assert result.trace.prompt_tokens <= result.trace.used


def test_a_tool_result_gets_a_stub_when_nothing_is_left() -> None:
    tools = (ToolResult("c1", "dump", "data " * 5000),)
    budget = Budget(60, 0, margin=0, min_current_tokens=16)
    result = run(msg(1, "go"), budget, tool_results=tools, system="")
    (tool,) = [m for m in result.messages if m.role == "tool"]
    assert tool.content == "[result left out: it has 5001 tokens, over the context budget]"
    assert not result.trace.over_budget
    assert reasons(result, "tools") == {"c1": "left out: over the context budget (stub sent)"}


def test_as_dict() -> None:
    call = PromptMessage("assistant", "", tool_calls=(PromptToolCall("c", "n", "{}"),))
    assert call.as_dict() == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c", "name": "n", "arguments": "{}"}],
    }
    assert PromptMessage("tool", "r", tool_call_id="c").as_dict() == {
        "role": "tool",
        "content": "r",
        "tool_call_id": "c",
    }


def test_a_long_room_costs_a_linear_number_of_counts() -> None:
    """Assembly counts each candidate a bounded number of times: a 3000-entry room costs
    O(n) counter calls, not O(n^2) (timing belongs in benchmarks/, this is the work)."""

    class Counting:
        name = COUNTER.name

        def __init__(self) -> None:
            self.calls = 0

        def count(self, text: str) -> int:
            self.calls += 1
            return COUNTER.count(text)

    log = tuple(
        msg(i, f"message {i} " * 20, "bot" if i % 4 == 0 else "ana") for i in range(1, 3001)
    )
    request = ContextRequest("bot", "You are bot.", log[-1], Budget(128_000, 4_000), log=log)
    counting = Counting()
    result = assemble(request, counting)
    assert sum(1 for i in result.trace.items if i.included) > 1000
    assert counting.calls <= 3 * len(log) + 50, counting.calls
