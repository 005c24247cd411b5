"""The built-in **offline** provider: no model, still useful.

For development and the embedded default (no key, no network). It answers the last
question with the passages of the prompt most relevant to it — extractive, ranked by a
BM25-style score over the words of the question — each with a link to its seq in the room
(the context assembler marks log entries ``[#seq] sender: text``). It streams through the
same path as a model (several text parts, usage, a finish), so everything downstream —
deltas, snapshots, cancellation, usage — is exercised without a model.

Asked for a rolling summary (``purpose="summary"``) it keeps the entries that carry the
chunk's most frequent content words, in log order, each cut short and cited by seq.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import AsyncIterator

from .parts import ChatRequest, Finish, Part, TextDelta, Usage

NAME = "offline"
MODEL = "offline-extractive"
MAX_PASSAGES = 3
WORDS_PER_PART = 6
SEQ_MARK = re.compile(r"^\[#(\d+)\]\s*")
SPEAKER = re.compile(r"^(?:\[#\d+\]\s*)?[^:\s]{1,128}:\s*")  # "[#12] ann: " before a text
_WORD = re.compile(r"\w+", re.UNICODE)
# Words that say little about what a question is about.
STOP_WORDS = frozenset(
    (
        "a an and are as at be but by can could did do does for from had has have how i if "
        "in is it its me my no not of on or our please so that the their them then there "
        "these they this to us was we were what when where which who why will with would "
        "you your about tell know anyone any say said"
    ).split()
)


def _terms(text: str) -> list[str]:
    return [w for w in (m.group().lower() for m in _WORD.finditer(text)) if w not in STOP_WORDS]


def _mention_free(text: str) -> str:
    return re.sub(r"@[\w.:+-]+", " ", text)


SUMMARY_HEAD = "to summarize:\n"  # core.context.summaries puts the entries after it
SUMMARY_LINE_CHARS = 160


def summarize(request: ChatRequest) -> str:
    """An extractive summary of the entries in the last user message: the ones whose words
    recur most in the chunk (a crude centroid), at most one in five, in log order."""
    users = [m for m in request.messages if m.role == "user"]
    content = users[-1].content if users else ""
    head = content.find(SUMMARY_HEAD)
    body = content[head + len(SUMMARY_HEAD) :] if head >= 0 else content
    lines = [line.strip() for line in body.splitlines() if SEQ_MARK.match(line.strip())]
    if not lines:
        return "Nothing was said in this range."
    docs = [Counter(_terms(_mention_free(SPEAKER.sub("", line)))) for line in lines]
    weight = Counter(t for d in docs for t in d)
    scored = sorted(
        range(len(lines)),
        key=lambda i: (-sum(weight[t] for t in docs[i]) / (1 + sum(docs[i].values())) ** 0.5, i),
    )
    keep = sorted(scored[: max(1, min(8, (len(lines) + 4) // 5))])
    budget = request.max_tokens * 4
    out: list[str] = []
    for i in keep:
        mark = SEQ_MARK.match(lines[i])
        text = SEQ_MARK.sub("", lines[i])
        if len(text) > SUMMARY_LINE_CHARS:
            text = text[: SUMMARY_LINE_CHARS - 1].rstrip() + "…"
        line = f"- {text} (#{mark.group(1) if mark else '?'})"
        if sum(len(x) + 1 for x in out) + len(line) > budget:
            break
        out.append(line)
    return "\n".join(out) or "Nothing was said in this range."


def answer(request: ChatRequest) -> str:
    """The reply text for ``request`` (pure: the same request gives the same answer)."""
    if request.purpose == "summary":
        return summarize(request)
    users = [m for m in request.messages if m.role == "user"]
    if not users:
        return "Ask me something about this room's conversation."
    # Assembly merges consecutive user entries into one message: the question is its
    # last entry (the last block that opens with a seq mark), the rest are passages.
    last = users[-1].content
    cut = last.rfind("\n\n[#")
    question = last[cut + 2 :] if cut >= 0 else last
    q_terms = _terms(_mention_free(SPEAKER.sub("", question)))
    passages = []
    for m in request.messages:
        if m.role not in ("user", "assistant", "tool"):
            continue
        content = m.content
        if m is users[-1]:
            content = last[:cut] if cut >= 0 else ""
        for line in content.splitlines():
            line = line.strip()
            if line:
                passages.append(line)
    if not q_terms:
        return "Ask me about something said in this room and I will quote it for you."
    docs = [Counter(_terms(SPEAKER.sub("", p))) for p in passages]
    avg = sum(sum(d.values()) for d in docs) / len(docs) if docs else 1.0
    df = Counter(t for d in docs for t in d)
    scored = []
    for i, (passage, doc) in enumerate(zip(passages, docs, strict=True)):
        length = sum(doc.values()) or 1
        score = 0.0
        for term in set(q_terms):
            tf = doc.get(term, 0)
            if tf:
                idf = math.log(1 + (len(docs) - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avg))
        if score > 0:
            scored.append((score, i, passage))
    if not scored:
        words = ", ".join(dict.fromkeys(q_terms))
        return f"I found nothing about {words} in what I can see of this room."
    scored.sort(key=lambda s: (-s[0], -s[1]))  # best first; the newer of equals
    lines = []
    for _, _, passage in scored[:MAX_PASSAGES]:
        mark = SEQ_MARK.match(passage)
        text = SEQ_MARK.sub("", passage)
        lines.append(f"- {text} (#{mark.group(1)})" if mark else f"- {text}")
    return "Here is what this room says about that:\n" + "\n".join(lines)


class OfflineProvider:
    """Streams ``answer(request)`` in small parts. ``part_delay`` spaces the parts (0 by
    default; a demo may set a few ms to make the streaming visible)."""

    name = NAME
    model = MODEL

    def __init__(self, part_delay: float = 0.0, name: str = NAME) -> None:
        self._delay = part_delay
        self.name = name

    async def stream(self, request: ChatRequest) -> AsyncIterator[Part]:
        text = answer(request)
        words = text.split(" ")
        prompt_chars = sum(len(m.content) for m in request.messages)
        sent = 0
        budget_chars = request.max_tokens * 4  # ~4 characters a token
        for i in range(0, len(words), WORDS_PER_PART):
            piece = " ".join(words[i : i + WORDS_PER_PART])
            if i + WORDS_PER_PART < len(words):
                piece += " "
            if sent + len(piece) > budget_chars:
                yield TextDelta(piece[: max(0, budget_chars - sent)])
                yield Usage(prompt_chars // 4 + 1, request.max_tokens)
                yield Finish("length")
                return
            sent += len(piece)
            yield TextDelta(piece)
            await asyncio.sleep(self._delay)  # also lets a cancel land between parts
        yield Usage(prompt_chars // 4 + 1, sent // 4 + 1)
        yield Finish("stop")

    async def close(self) -> None:
        return None
