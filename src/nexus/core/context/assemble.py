"""Context assembly: one pure function from a request (log tail, pinned blocks, summaries,
retrieved memories, tool results, budget) to prompt messages and a trace.

Spending the budget (``input_limit`` = window - max output - margin; the reply priming
is charged first). Every item is charged its text's tokens plus ``MESSAGE_OVERHEAD`` as if
it were a message of its own; merged items cost less, so the charges bound the prompt.

1. System prompt: always, whole (never cut: a half instruction misleads).
2. Current turn: always; whole when it fits beside the system prompt and the tool call
   stubs, else cut (its head kept, a marker says how long it was) to what is left, but
   never below ``min_current_tokens`` of its own text (the marker comes on top). Only this
   minimum (system + current cut so + one stub per tool call) may exceed the limit: the
   trace then says ``over_budget`` and nothing else goes in.
3. Pinned blocks: in order, each whole if it fits (never cut).
4. Tool results of the turn: each call always gets an answer (OpenAI requires one per
   call): the full result, or one cut to its share, or a stub saying it was left out.
   They get what the conversation does not need, and at least ``tool_share`` of what is
   left when it competes; within that, small results go in whole and the big ones share
   the rest equally.
5. Summaries: newest range first, whole, while they fit; one that overlaps an included
   summary or reaches the current turn is left out; the first that does not fit stops
   the section (older ones would leave a gap).
6. Retrieved items: by score (then id), whole, within ``retrieved_share`` of what is left;
   items already in the given log slice (same room, seq range inside it) and repeats (same
   id or text) are left out.
7. The log tail, newest first, whole entries: the first that does not fit stops it (the
   oldest are dropped); entries covered by an included summary, deleted or empty ones,
   edit/delete markers and kinds other than ``message`` are left out; so are the current
   turn (it is in already) and entries after it.

Messages (valid for OpenAI and Anthropic alike, and for strict chat templates):
one system message (system prompt, then the pinned blocks); then user and assistant
messages that alternate, starting with a user message. Summaries and memories open the
conversation as a user message (they are quoted room content, not instructions). Other
people's entries (and other agents') are user messages ``[#seq] sender: text``; the
agent's own are assistant messages with the text alone. Consecutive items of one role
are merged here into one message (blank line between them), so no adapter has to. When
the conversation would start with the agent's own message, a short user line opens it
(charged to ``framing``). The current turn is the last user message; the turn's tool calls
follow as assistant messages with ``tool_calls``, each followed by one tool message per
call (an Anthropic adapter puts consecutive tool messages into one user message of
``tool_result`` blocks, as its wire format requires). No message sets ``name``: OpenAI
allows only ``[a-zA-Z0-9_-]`` there and takes none on tool messages (the tool's name is on
the assistant message's call).

Same request and counter, same output, byte for byte: no clock, no randomness, every
ordering has a total key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .model import (
    SECTIONS,
    Assembly,
    Budget,
    LogEntry,
    PromptMessage,
    PromptToolCall,
    RetrievedItem,
    Role,
    Section,
    SectionTotal,
    ToolResult,
    Trace,
    TraceItem,
)
from .render import entry_line, hidden_reason, memory_block, seq_range, summary_block
from .summaries import Summary
from .tokens import (
    MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    TOOL_CALL_OVERHEAD,
    TokenCounter,
    truncate_to_tokens,
)

OPENER = "(The conversation so far.)"
JOIN = "\n\n"
MIN_TOOL_EXTRA = 16  # a cut result shorter than its stub plus this is given as the stub


@dataclass(frozen=True, slots=True)
class ContextRequest:
    """Everything one assembly looks at. ``log`` is the room's recent tail, oldest first;
    ``current`` is the entry the agent answers; ``agent_id`` is the agent's user id (its
    own entries become assistant messages); ``room`` tells retrieved items from this
    room apart."""

    agent_id: str
    system: str
    current: LogEntry
    budget: Budget
    log: tuple[LogEntry, ...] = ()
    pinned: tuple[str, ...] = ()
    summaries: tuple[Summary, ...] = ()
    retrieved: tuple[RetrievedItem, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()
    room: str = ""


@dataclass(slots=True)
class _Item:
    """A candidate on its way into the prompt."""

    section: Section
    ref: str
    included: bool = False
    reason: str = ""
    tokens: int = 0
    role: Role = "user"
    text: str = ""
    message: int | None = None
    order: tuple[int, ...] = field(default=())  # position among the conversation items


def assemble(request: ContextRequest, counter: TokenCounter) -> Assembly:
    """The prompt for ``request`` and the trace of how it was made (module docstring)."""
    return _Assembler(request, counter).run()


class _Assembler:
    def __init__(self, request: ContextRequest, counter: TokenCounter) -> None:
        self.r = request
        self.counter = counter
        self.budget = request.budget
        self.limit = request.budget.input_limit
        self.left = self.limit - REPLY_PRIMING
        self.items: list[_Item] = []

    def cost(self, text: str) -> int:
        return self.counter.count(text) + MESSAGE_OVERHEAD

    def add(self, item: _Item) -> _Item:
        self.items.append(item)
        if item.included:
            self.left -= item.tokens
        return item

    # -- the sections, in spending order -----------------------------------------------

    def run(self) -> Assembly:
        r = self.r
        tokens = self.cost(r.system) if r.system else 0
        system = self.add(_Item("system", "system", True, "always included", tokens, "system"))
        system.text = r.system
        steps = self.tool_steps()
        stub_cost = sum(s.stub_total for s in steps)
        current = self.current(stub_cost)
        tool_items = self.tools(steps)
        # Over budget, nothing below fits (``left`` < 0): each candidate still gets its reason.
        self.pinned()
        self.tools_fill(steps, tool_items)
        covering = self.summaries()
        retrieved_any = self.retrieved()
        self.log(covering, need_opener=not covering and not retrieved_any)
        messages = self.messages(system, current, steps, tool_items)
        return Assembly(messages, self.trace(messages))

    def current(self, stub_cost: int) -> _Item:
        text = entry_line(self.r.current)
        full = self.cost(text)
        room = self.left - stub_cost
        if full <= room:
            return self.add(
                _Item(
                    "current", f"#{self.r.current.seq}", True, "always included", full, "user", text
                )
            )
        marker = f"\n[cut: the message has {full - MESSAGE_OVERHEAD} tokens]"
        # At least min_current_tokens of the message itself, the marker on top.
        floor = self.budget.min_current_tokens + self.counter.count(marker)
        cut, tokens = truncate_to_tokens(
            self.counter, text, max(room - MESSAGE_OVERHEAD, floor), marker
        )
        reason = "always included, over budget"
        if cut != text:
            reason = f"always included, cut to {tokens} of {full - MESSAGE_OVERHEAD} tokens"
        return self.add(
            _Item(
                "current",
                f"#{self.r.current.seq}",
                True,
                reason,
                tokens + MESSAGE_OVERHEAD,
                "user",
                cut,
            )
        )

    def tool_steps(self) -> list[_Step]:
        by_step: dict[int, list[ToolResult]] = {}
        for result in self.r.tool_results:
            by_step.setdefault(result.step, []).append(result)
        steps = []
        for step in sorted(by_step):
            results = by_step[step]
            call_cost = MESSAGE_OVERHEAD + sum(
                self.counter.count(c.id)
                + self.counter.count(c.name)
                + self.counter.count(c.arguments)
                + TOOL_CALL_OVERHEAD
                for c in results
            )
            stubs = [
                f"[result left out: it has {self.counter.count(c.text)} tokens, "
                "over the context budget]"
                for c in results
            ]
            steps.append(_Step(results, call_cost, stubs, [self.cost(s) for s in stubs]))
        return steps

    def tools(self, steps: list[_Step]) -> list[_Item]:
        """Every call with its stub (the minimum); ``tools_fill`` puts results in."""
        items = []
        for step in steps:
            for i, result in enumerate(step.results):
                charge = step.stub_costs[i] + (step.call_cost if i == 0 else 0)
                reason = "left out: over the context budget (stub sent)"
                item = _Item("tools", result.id, True, reason, charge, "tool", step.stubs[i])
                items.append(self.add(item))
        return items

    def tools_fill(self, steps: list[_Step], items: list[_Item]) -> None:
        flat = [(s, i, res) for s in steps for i, res in enumerate(s.results)]
        if not flat:
            return
        full = [self.cost(res.text) for _, _, res in flat]
        needs = [f - s.stub_costs[i] for f, (s, i, _) in zip(full, flat, strict=True)]
        rest = self.rest_demand()
        extra = max(math.floor(self.left * self.budget.tool_share), self.left - rest)
        extra = max(min(extra, self.left), 0)
        order = sorted(range(len(flat)), key=lambda k: (needs[k], k))
        for n, k in enumerate(order):
            step, i, result = flat[k]
            item = items[k]
            share = extra // (len(order) - n)
            if needs[k] <= share:
                item.text, item.reason, used = result.text, "fits", needs[k]
            elif share >= MIN_TOOL_EXTRA:
                allowance = step.stub_costs[i] + share - MESSAGE_OVERHEAD
                marker = f"\n[cut: the result has {full[k] - MESSAGE_OVERHEAD} tokens]"
                text, tokens = truncate_to_tokens(self.counter, result.text, allowance, marker)
                item.text = text
                item.reason = f"cut to {tokens} of {full[k] - MESSAGE_OVERHEAD} tokens"
                used = tokens + MESSAGE_OVERHEAD - step.stub_costs[i]
            else:
                continue
            item.tokens += used
            self.left -= used
            extra -= used

    def rest_demand(self) -> int:
        """What summaries, memories and the log would take, all in: the tool results get
        the remainder when it is more than their share."""
        demand = sum(
            self.cost(summary_block(s.first_seq, s.last_seq, s.text)) for s in self.r.summaries
        )
        demand += sum(self.cost(memory_block(m)) for m in self.r.retrieved)
        demand += sum(
            self.cost(self.render(e))
            for e in self.r.log
            if e.seq < self.r.current.seq and hidden_reason(e) is None
        )
        return demand + self.cost(OPENER)

    def pinned(self) -> None:
        for i, block in enumerate(self.r.pinned):
            tokens = self.cost(block)
            fits = tokens <= self.left
            item = _Item(
                "pinned",
                f"pinned[{i}]",
                fits,
                "fits" if fits else "over budget",
                tokens,
                "system",
                block,
            )
            self.add(item)

    def summaries(self) -> list[Summary]:
        chosen: list[Summary] = []
        stopped = False
        ordered = sorted(self.r.summaries, key=lambda s: (-s.last_seq, -s.first_seq, s.text))
        for s in ordered:
            ref = seq_range(s.first_seq, s.last_seq)
            text = summary_block(s.first_seq, s.last_seq, s.text)
            tokens = self.cost(text)
            overlap = next(
                (c for c in chosen if c.first_seq <= s.last_seq and s.first_seq <= c.last_seq), None
            )
            if s.last_seq >= self.r.current.seq:
                reason = "reaches the current turn"
            elif overlap is not None:
                reason = f"overlaps summary {seq_range(overlap.first_seq, overlap.last_seq)}"
            elif stopped or tokens > self.left:
                stopped = True
                reason = "over budget"
            else:
                chosen.append(s)
                self.add(
                    _Item(
                        "summaries", ref, True, "fits", tokens, "user", text, order=(0, s.first_seq)
                    )
                )
                continue
            self.add(_Item("summaries", ref, False, reason, tokens))
        return chosen

    def retrieved(self) -> bool:
        cap = max(math.floor(self.left * self.budget.retrieved_share), 0)
        shown = [e.seq for e in self.r.log if e.seq <= self.r.current.seq] + [self.r.current.seq]
        lo, hi = min(shown), max(shown)
        seen_ids: set[str] = set()
        seen_texts: set[str] = set()
        any_in = False
        ranked = sorted(
            enumerate(self.r.retrieved), key=lambda p: (_rank(p[1].score), p[1].id, p[0])
        )
        for rank, (_, m) in enumerate(ranked):
            text = memory_block(m)
            tokens = self.cost(text)
            if m.id in seen_ids:
                reason = "duplicate id"
            elif m.text in seen_texts:
                reason = "duplicate text"
            elif self.in_slice(m, lo, hi):
                reason = f"in the log slice ({seq_range(*self.span(m))})"
            elif tokens > cap:
                reason = f"over the retrieved share ({cap} tokens left of it)"
            else:
                cap -= tokens
                seen_ids.add(m.id)
                seen_texts.add(m.text)
                any_in = True
                self.add(
                    _Item(
                        "retrieved",
                        m.id,
                        True,
                        f"score {m.score:g}",
                        tokens,
                        "user",
                        text,
                        order=(1, rank),
                    )
                )
                continue
            seen_ids.add(m.id)
            seen_texts.add(m.text)
            self.add(_Item("retrieved", m.id, False, reason, tokens))
        return any_in

    def span(self, m: RetrievedItem) -> tuple[int, int]:
        first = m.first_seq if m.first_seq is not None else 0
        return first, m.last_seq if m.last_seq is not None else first

    def in_slice(self, m: RetrievedItem, lo: int, hi: int) -> bool:
        if m.room != self.r.room or m.first_seq is None:
            return False
        first, last = self.span(m)
        return lo <= first and last <= hi

    def render(self, entry: LogEntry) -> str:
        return entry.text if entry.sender == self.r.agent_id else entry_line(entry)

    def log(self, covering: list[Summary], need_opener: bool) -> None:
        opener_cost = self.cost(OPENER) if need_opener else 0
        self.left -= opener_cost
        stopped = False
        seen: set[int] = set()
        first_role: Role | None = None
        cur = self.r.current.seq
        for entry in sorted(self.r.log, key=lambda e: -e.seq):
            ref = f"#{entry.seq}"
            hidden = hidden_reason(entry)
            cover = next((s for s in covering if s.covers(entry.seq)), None)
            tokens = 0
            if entry.seq in seen:
                reason = "duplicate"
            elif entry.seq == cur:
                reason = "the current turn"
            elif entry.seq > cur:
                reason = "after the current turn"
            elif hidden is not None:
                reason = hidden
            elif cover is not None:
                reason = f"covered by summary {seq_range(cover.first_seq, cover.last_seq)}"
            else:
                text = self.render(entry)
                tokens = self.cost(text)
                if not stopped and tokens <= self.left:
                    role: Role = "assistant" if entry.sender == self.r.agent_id else "user"
                    first_role = role
                    seen.add(entry.seq)
                    self.add(
                        _Item("log", ref, True, "fits", tokens, role, text, order=(2, entry.seq))
                    )
                    continue
                stopped = True
                reason = "over budget"
            seen.add(entry.seq)
            self.add(_Item("log", ref, False, reason, tokens))
        self.left += opener_cost
        # first_role is the oldest included entry's role.
        if need_opener and first_role == "assistant":
            self.add(
                _Item(
                    "framing",
                    "opener",
                    True,
                    "the conversation opens with a user message",
                    opener_cost,
                    "user",
                    OPENER,
                    order=(-1,),
                )
            )

    # -- the output ------------------------------------------------------------------------

    def messages(
        self, system: _Item, current: _Item, steps: list[_Step], tool_items: list[_Item]
    ) -> tuple[PromptMessage, ...]:
        out: list[PromptMessage] = []
        pinned = [i for i in self.items if i.section == "pinned" and i.included]
        head = JOIN.join(i.text for i in [system, *pinned] if i.text)
        if head:
            for i in (system, *pinned):
                i.message = 0
            out.append(PromptMessage("system", head))
        talk = sorted(
            (i for i in self.items if i.included and i.order),
            key=lambda i: i.order,
        )
        talk.append(current)
        for item in talk:
            if out and out[-1].role == item.role and out[-1].role != "system":
                last = out[-1]
                out[-1] = PromptMessage(last.role, last.content + JOIN + item.text)
            else:
                out.append(PromptMessage(item.role, item.text))
            item.message = len(out) - 1
        k = 0
        for step in steps:
            calls = tuple(PromptToolCall(c.id, c.name, c.arguments) for c in step.results)
            out.append(PromptMessage("assistant", "", tool_calls=calls))
            for result in step.results:
                item = tool_items[k]
                out.append(PromptMessage("tool", item.text, tool_call_id=result.id))
                item.message = len(out) - 1
                k += 1
        return tuple(out)

    def trace(self, messages: tuple[PromptMessage, ...]) -> Trace:
        items = tuple(
            TraceItem(i.section, i.ref, i.included, i.reason, i.tokens, i.message)
            for i in self.items
        )
        sections = []
        for name in SECTIONS:
            mine = [i for i in items if i.section == name]
            sections.append(
                SectionTotal(
                    name,
                    sum(1 for i in mine if i.included),
                    sum(1 for i in mine if not i.included),
                    sum(i.tokens for i in mine if i.included),
                    sum(i.tokens for i in mine if not i.included),
                )
            )
        used = REPLY_PRIMING + sum(i.tokens for i in items if i.included)
        return Trace(
            counter=self.counter.name,
            context_window=self.budget.context_window,
            max_output_tokens=self.budget.max_output_tokens,
            margin=self.budget.margin,
            input_limit=self.limit,
            used=used,
            prompt_tokens=prompt_tokens(messages, self.counter),
            over_budget=used > self.limit,
            items=items,
            sections=tuple(sections),
        )


@dataclass(slots=True)
class _Step:
    """One model step of the turn: its calls, what the assistant message with them costs,
    and each result's stub."""

    results: list[ToolResult]
    call_cost: int
    stubs: list[str]
    stub_costs: list[int]

    @property
    def stub_total(self) -> int:
        return self.call_cost + sum(self.stub_costs)


def _rank(score: float) -> float:
    """Best first; a NaN score sorts last (it would break the ordering)."""
    return math.inf if math.isnan(score) else -score


def prompt_tokens(messages: tuple[PromptMessage, ...], counter: TokenCounter) -> int:
    """The tokens of ``messages`` as sent: content, per-message overhead, tool calls and the
    reply priming (the same rules as the charges, on the merged messages)."""
    total = REPLY_PRIMING
    for m in messages:
        total += counter.count(m.content) + MESSAGE_OVERHEAD
        for c in m.tool_calls:
            total += (
                counter.count(c.id)
                + counter.count(c.name)
                + counter.count(c.arguments)
                + TOOL_CALL_OVERHEAD
            )
    return total
