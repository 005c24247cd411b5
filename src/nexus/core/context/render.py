"""How room entries, summaries and memories read to a model: one text form for each,
shared by assembly and the summarizer (so a summary's prompt and the live prompt agree)."""

from __future__ import annotations

from .model import LogEntry, RetrievedItem

SHOWN_KINDS = frozenset({"message"})


def entry_line(entry: LogEntry) -> str:
    """``[#seq] sender: text``: the sender in the text, not in the ``name`` field, because
    OpenAI's ``name`` allows only ``[a-zA-Z0-9_-]`` and Anthropic has none; the seq lets
    the model cite entries."""
    return f"[#{entry.seq}] {entry.sender}: {entry.text}"


def hidden_reason(entry: LogEntry) -> str | None:
    """Why ``entry`` is never shown to a model, or None when it is."""
    if entry.kind == "message.edited":
        return f"edit of {entry.target or '?'}: the message shows its current text"
    if entry.kind == "message.deleted":
        return f"deletion of {entry.target or '?'}"
    if entry.kind not in SHOWN_KINDS:
        return f"not shown: {entry.kind}"
    if entry.deleted:
        return "deleted"
    if not entry.text.strip():
        return "empty"
    return None


def seq_range(first: int, last: int) -> str:
    return f"#{first}" if first == last else f"#{first}-#{last}"


def summary_block(first_seq: int, last_seq: int, text: str) -> str:
    return f"[summary of {seq_range(first_seq, last_seq)}]\n{text}"


def memory_block(item: RetrievedItem) -> str:
    where = item.room
    if item.first_seq is not None:
        last = item.last_seq if item.last_seq is not None else item.first_seq
        where = f"{where} {seq_range(item.first_seq, last)}".strip()
    source = f", {where}" if where else ""
    return f"[memory {item.id}{source}]\n{item.text}"
