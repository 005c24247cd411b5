"""Server-sent events, sans-I/O: bytes in, events out (the WHATWG event-stream rules).

``SseParser.feed(chunk)`` accepts whatever the network delivered — a chunk may end inside
a line or inside a UTF-8 character — and returns the events completed by it. Lines end
with CRLF, LF or CR; ``:`` lines are comments (keep-alive pings); a blank line dispatches
the event being built. ``close()`` marks the end of the stream: per the spec an event
without its closing blank line is dropped, and ``truncated`` says that happened so the
caller can report a stream cut short.

A line longer than ``MAX_LINE_CHARS`` or an event whose data passes ``MAX_EVENT_CHARS``
raises ``SseTooLarge``: a broken or hostile endpoint must not grow our memory without
bound (a model's streamed chunk is a few hundred bytes).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

MAX_LINE_CHARS = 1 << 20
MAX_EVENT_CHARS = 4 << 20


class SseTooLarge(ValueError):
    """A line or an event over the limits."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event. ``id`` is the last event id seen so far (the spec's
    ``lastEventId``), ``None`` before any."""

    event: str = "message"
    data: str = ""
    id: str | None = None


class SseParser:
    """Incremental event-stream parser; one per response."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial: list[str] = []  # decoded text of a line not yet complete
        self._partial_chars = 0
        self._data_chars = 0
        self._at_start = True  # a BOM may only open the stream
        self._after_cr = False  # the last line ended with CR: a leading LF is its CRLF
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._pending = False  # fields seen since the last dispatch
        self.retry: int | None = None  # the server's reconnection time, ms (not used by us)
        self.truncated = False  # close() found an event or line left unfinished

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by ``chunk``.

        Args:
            chunk: the next bytes of the stream, split anywhere.
        """
        text = self._decoder.decode(chunk)
        if self._at_start and text:
            self._at_start = False
            text = text.removeprefix("\ufeff")
        return self._lines(text)

    def close(self) -> list[SseEvent]:
        """End of stream. Returns no events (an unterminated event is dropped, as the
        spec says) but sets ``truncated`` when one, or a partial line, was left."""
        tail = self._decoder.decode(b"", final=True)
        self.truncated = bool(self._partial_chars or tail) or self._pending
        self._partial, self._partial_chars = [], 0
        self._reset_event()
        return []

    def _lines(self, text: str) -> list[SseEvent]:
        if self._after_cr and text:
            self._after_cr = False
            if text[0] == "\n":
                text = text[1:]
        if "\n" not in text and "\r" not in text:
            # More of a long line: kept in pieces, joined once it ends (not re-scanned).
            self._partial.append(text)
            self._partial_chars += len(text)
            if self._partial_chars > MAX_LINE_CHARS:
                raise SseTooLarge(f"a line longer than {MAX_LINE_CHARS} characters")
            return []
        buffer = "".join(self._partial) + text if self._partial else text
        events: list[SseEvent] = []
        start = 0
        size = len(buffer)
        while start < size:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr < 0 and lf < 0:
                break
            end = lf if cr < 0 or (0 <= lf < cr) else cr
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            if buffer[end] == "\r":
                if end + 1 == size:  # the LF of a CRLF may come with the next chunk
                    self._after_cr = True
                    start = size
                    break
                if buffer[end + 1] == "\n":
                    end += 1
            start = end + 1
        rest = buffer[start:]
        self._partial, self._partial_chars = ([rest], len(rest)) if rest else ([], 0)
        if self._partial_chars > MAX_LINE_CHARS:
            raise SseTooLarge(f"a line longer than {MAX_LINE_CHARS} characters")
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None  # a comment: servers send these as keep-alive pings
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_chars += len(value) + 1
            if self._data_chars > MAX_EVENT_CHARS:
                raise SseTooLarge(f"an event larger than {MAX_EVENT_CHARS} characters")
            self._pending = True
        elif name == "event":
            self._event = value
            self._pending = True
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
            self._pending = True
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None  # unknown fields are ignored

    def _dispatch(self) -> SseEvent | None:
        if not self._data:
            self._reset_event()  # an event without data is not dispatched
            return None
        event = SseEvent(self._event or "message", "\n".join(self._data), self._last_id)
        self._reset_event()
        return event

    def _reset_event(self) -> None:
        self._data = []
        self._data_chars = 0
        self._event = ""
        self._pending = False
