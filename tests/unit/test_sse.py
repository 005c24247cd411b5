"""The SSE parser, sans-I/O: line ends, comments, fields, dispatch, end of stream, and a
property — however the bytes are chunked, the events are the same."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nexus.extensions.ai.sse import (
    MAX_EVENT_CHARS,
    MAX_LINE_CHARS,
    SseEvent,
    SseParser,
    SseTooLarge,
)


def parse(*chunks: bytes) -> tuple[list[SseEvent], SseParser]:
    parser = SseParser()
    events: list[SseEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    return events, parser


def test_data_lines_and_dispatch() -> None:
    events, parser = parse(b'data: {"a":1}\n\ndata: two\n\n')
    assert events == [SseEvent("message", '{"a":1}'), SseEvent("message", "two")]
    assert not parser.truncated


def test_event_name_multi_line_data_and_id() -> None:
    events, _ = parse(b"event: message_start\ndata: a\ndata:b\nid: 7\n\nevent: ping\ndata: x\n\n")
    assert events == [SseEvent("message_start", "a\nb", "7"), SseEvent("ping", "x", "7")]


def test_line_ends_crlf_cr_lf_mixed() -> None:
    events, _ = parse(b"data: a\r\n\r\ndata: b\r\rdata: c\n\ndata: d\r\n\n")
    assert [e.data for e in events] == ["a", "b", "c", "d"]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    events, _ = parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert events == [SseEvent("message", "a\nb")]


def test_comments_are_pings_not_events() -> None:
    events, _ = parse(b": ping\n\n:\n\ndata: x\n: inside\n\n")
    assert events == [SseEvent("message", "x")]


def test_bom_only_at_the_start() -> None:
    events, _ = parse(b"\xef\xbb", b"\xbfdata: x\n\ndata: \xef\xbb\xbfy\n\n")
    assert [e.data for e in events] == ["x", "\ufeffy"]


def test_utf8_split_inside_a_character() -> None:
    raw = "data: héllo 🎉\n\n".encode()
    cut = raw.index("🎉".encode()) + 2
    events, _ = parse(raw[:cut], raw[cut:])
    assert events == [SseEvent("message", "héllo 🎉")]


def test_field_rules() -> None:
    # no colon: the whole line is the name; one space after the colon is dropped, not two;
    # unknown fields ignored; retry digits only; an id with NUL is ignored
    events, parser = parse(b"data\n\ndata:  two\nfoo: bar\nretry: 1500\nid: a\0b\n\nretry: x\n")
    assert events == [SseEvent("message", ""), SseEvent("message", " two")]
    assert parser.retry == 1500


def test_event_without_data_is_not_dispatched() -> None:
    events, parser = parse(b"event: ping\n\ndata: x\n\n")
    assert events == [SseEvent("message", "x")]
    assert not parser.truncated


def test_unterminated_event_is_dropped_and_reported() -> None:
    events, parser = parse(b"data: a\n\ndata: b\n")
    assert events == [SseEvent("message", "a")]
    assert parser.truncated
    _, partial_line = parse(b"data: a\n\ndata: b")
    assert partial_line.truncated


def test_nothing_left_is_not_truncated() -> None:
    _, parser = parse(b"data: a\n\n: bye\n")
    assert not parser.truncated


def test_invalid_utf8_is_replaced_not_raised() -> None:
    events, _ = parse(b"data: \xff\xfe ok\n\n")
    assert events == [SseEvent("message", "\ufffd\ufffd ok")]


LINES = st.sampled_from(
    [
        "data: plain",
        "data: héllo wörld 🎉",
        "data:",
        "data",
        "event: content_block_delta",
        ": ping",
        "id: 3",
        "retry: 10",
        'data: {"x": [1, 2]}',
        "",
    ]
)
ENDS = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(LINES, ENDS), max_size=30))
    return "".join(line + end for line, end in lines).encode()


@given(streams(), st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_chunking_gives_the_same_events(raw: bytes, cuts: list[int]) -> None:
    whole, whole_parser = parse(raw)
    points = sorted({min(c, len(raw)) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    chunked, chunked_parser = parse(*pieces)
    assert chunked == whole
    assert chunked_parser.truncated == whole_parser.truncated
    byte_by_byte, _ = parse(*(raw[i : i + 1] for i in range(len(raw))))
    assert byte_by_byte == whole


def test_a_line_over_the_limit_is_refused_whatever_the_chunking() -> None:
    parser = SseParser()
    piece = b"data: " + b"x" * 4096
    with pytest.raises(SseTooLarge):
        for _ in range(MAX_LINE_CHARS // 4096 + 2):
            parser.feed(piece)  # never a line break: one line growing


def test_an_event_over_the_limit_is_refused() -> None:
    parser = SseParser()
    line = b"data: " + b"y" * (MAX_LINE_CHARS // 2) + b"\n"
    with pytest.raises(SseTooLarge):
        for _ in range(MAX_EVENT_CHARS // (MAX_LINE_CHARS // 2) + 2):
            parser.feed(line)  # lines of one event: no blank line dispatches it


def test_a_long_line_in_small_chunks_is_one_event() -> None:
    parser = SseParser()
    text = "z" * 100_000
    raw = f"data: {text}\n\n".encode()
    events = [e for i in range(0, len(raw), 7) for e in parser.feed(raw[i : i + 7])]
    assert [e.data for e in events] == [text]
