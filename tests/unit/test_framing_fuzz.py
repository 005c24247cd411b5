"""Frame-scanner fuzzing: ``count_frames``/``count_messages`` against the plain-Python model
``tests/models/framing_model.parse`` on random streams, and the frame builders parsed back.

``NEXUS_FUZZ_EXAMPLES`` sets the examples per property (default 200), as for the decoder.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import NamedTuple

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from models import framing_model as model
from nexus._speedups import framing

FUZZ_EXAMPLES = int(os.environ.get("NEXUS_FUZZ_EXAMPLES", "200"))
fuzz = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None)

Buffer = bytes | bytearray | memoryview
containers: st.SearchStrategy[Callable[[bytes], Buffer]] = st.sampled_from(
    [bytes, bytearray, memoryview]
)
PREFIX = b'{"type":"message"'

# Payload lengths: every length encoding (7-bit, 16-bit, 64-bit) and the edges between them.
payload_lengths = (
    st.integers(0, 130)
    | st.sampled_from([125, 126, 127, 65535, 65536, 65537])
    | st.integers(0, 70000)
)
# 70656 bytes: payloads are slices, not drawn byte by byte; the longest payload (70000)
# starting at the largest offset (255) must still fit, or a frame carries fewer bytes than
# its header declares and the stream desynchronises
FILLER = bytes(range(256)) * 276


class Frame(NamedTuple):
    """One frame as it goes on the wire, and its payload."""

    wire: bytes
    payload: bytes


def header(b0: int, n: int, width: int, masked: bool = False) -> bytes:
    """A frame header declaring ``n`` payload bytes in a length field of at least ``width``
    (0: 7-bit, 1: 16-bit, 2: 64-bit); wider than needed is allowed, as the scanner allows."""
    mask = 0x80 if masked else 0
    if n < 126 and width == 0:
        return struct.pack("!BB", b0, mask | n)
    if n < 65536 and width <= 1:
        return struct.pack("!BBH", b0, mask | 126, n)
    return struct.pack("!BBQ", b0, mask | 127, n)


# Strategies are built once: building them inside each draw costs more than the scanning.
first_bytes = st.builds(int.__or__, st.integers(0, 15), st.sampled_from([0x80, 0x00, 0xF0, 0x40]))
payload_heads = st.sampled_from([PREFIX, PREFIX[:-1] + b"X", PREFIX[:8], b""]) | st.binary(
    max_size=8
)
offsets = st.integers(0, 255)
widths = st.integers(0, 2)
giant_lengths = st.sampled_from([2**63 - 1, 2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1)
index_picks = st.integers(0, 2**16)
small_offsets = st.integers(0, 8)


@st.composite
def frames(draw: DrawFn) -> Frame:
    """A frame with a random opcode and FIN/RSV bits, a payload that may start with
    ``PREFIX`` (or a near miss of it), and any length encoding wide enough."""
    b0, n = draw(first_bytes), draw(payload_lengths)
    head, start = draw(payload_heads), draw(offsets)
    payload = (head + FILLER[start : start + n])[:n]
    return Frame(header(b0, n, draw(widths)) + payload, payload)


class Stream(NamedTuple):
    """Bytes to scan: ``junk`` the scan skips, then frames, maybe cut short."""

    data: bytes
    start: int  # a frame boundary after the junk
    cut: int  # where the data ends: anywhere from ``start`` on


junks = st.binary(max_size=16)
frame_lists = st.lists(frames(), max_size=4)
cut_kinds = st.sampled_from(["whole", "at-start", "anywhere", "anywhere"])


@st.composite
def streams(draw: DrawFn) -> Stream:
    junk = draw(junks)
    wire = [f.wire for f in draw(frame_lists)]
    # A last frame that may declare more than any buffer holds (up to 2^64 - 1 bytes), with
    # at most 8 bytes of its payload present.
    if draw(st.booleans()):
        n = draw(giant_lengths)
        wire.append(header(0x81, n, 2) + FILLER[: min(n, draw(small_offsets))])
    boundaries = [len(junk)]
    for w in wire:
        boundaries.append(boundaries[-1] + len(w))
    data = junk + b"".join(wire)
    start = boundaries[draw(index_picks) % len(boundaries)]
    cut = {
        "whole": len(data),
        "at-start": start,
        "anywhere": start + draw(index_picks) * 31 % (len(data) - start + 1),
    }[draw(cut_kinds)]
    return Stream(data, start, cut)


def expected_scan(data: bytes, start: int, prefix: bytes) -> tuple[int, int, int]:
    """(frames, frames whose payload starts with ``prefix``, end offset) by the model."""
    parsed, used = model.parse(data[start:])
    matching = sum(payload.startswith(prefix) for _, payload in parsed)
    return len(parsed), matching, start + used


# -- the scanner against the model ------------------------------------------------------------


@fuzz
@given(streams(), st.sampled_from([PREFIX, b"{", b""]) | st.binary(max_size=20), containers)
@example(Stream(b"", 0, 0), PREFIX, bytes)
@example(Stream(b"\x81", 0, 1), PREFIX, bytes)
@example(Stream(b"\x81\x7e\x00", 0, 3), PREFIX, bytes)
@example(Stream(b"\x81\x7f" + b"\xff" * 8, 0, 10), PREFIX, bytes)
@example(  # a 69999-byte payload sliced from the end of FILLER (it once came up short)
    Stream(
        (header(0x80, 69999, 2) + FILLER[255 : 255 + 69999]) * 2,
        0,
        2 * (10 + 69999),
    ),
    PREFIX,
    bytes,
)
def test_scanner_matches_the_model(
    stream: Stream, prefix: bytes, container: Callable[[bytes], Buffer]
) -> None:
    """Random opcodes, payloads of 0-70000 bytes in all three length encodings, a partial
    trailing frame, a start offset past skipped bytes: same frame count, same count of
    frames starting with the prefix (all frames for an empty prefix), same end offset."""
    data = stream.data[: stream.cut]
    count, matching, end = expected_scan(data, stream.start, prefix)
    assert framing.count_frames(container(data), stream.start) == (count, end)
    assert framing.count_messages(container(data), prefix, stream.start) == (count, matching, end)


small_lengths = st.integers(0, 300)


@st.composite
def masked_streams(draw: DrawFn) -> tuple[bytes, int]:
    """Unmasked frames with one masked frame among them, maybe cut before or inside it."""
    wire = [f.wire for f in draw(frame_lists)]
    n = draw(small_lengths)
    masked = header(0x81, n, draw(widths), masked=True) + bytes(4) + bytes(n)
    wire.insert(draw(index_picks) % (len(wire) + 1), masked)
    data = b"".join(wire)
    return data, draw(index_picks) * 31 % (len(data) + 1)


@fuzz
@given(masked_streams(), containers)
def test_masked_frames_raise_where_the_model_does(
    stream: tuple[bytes, int], container: Callable[[bytes], Buffer]
) -> None:
    """A masked frame (never sent by a server) raises ValueError as soon as the scan reaches
    its header, and only then; a cut before it leaves the result as the model's."""
    data = stream[0][: stream[1]]
    try:
        want = expected_scan(data, 0, PREFIX)
    except ValueError:
        with pytest.raises(ValueError):
            framing.count_frames(container(data))
        with pytest.raises(ValueError):
            framing.count_messages(container(data), PREFIX)
    else:
        assert framing.count_frames(container(data)) == (want[0], want[2])
        assert framing.count_messages(container(data), PREFIX) == want


@pytest.mark.parametrize("n", [0, 125, 126, 65536])
@pytest.mark.parametrize("width", [0, 1, 2])
@pytest.mark.parametrize("before", [0, 1, 3])
def test_complete_masked_frame_is_refused(before: int, width: int, n: int) -> None:
    """After any unmasked frames, a complete masked frame (any length encoding) makes both
    scanners raise."""
    data = (
        framing.frame_text(PREFIX + b"}") * before
        + header(0x81, n, width, masked=True)
        + bytes(4)
        + bytes(n)
    )
    with pytest.raises(ValueError):
        framing.count_frames(data)
    with pytest.raises(ValueError):
        framing.count_messages(data, PREFIX)


def test_negative_start_is_refused() -> None:
    """A negative ``start`` is refused. The scanner indexes without bounds checks: start=-1
    reads the byte before the buffer as a frame header, and a large negative start crashes
    the interpreter (SIGSEGV with -2**40)."""
    data = b"\x01\x05hello"  # a non-FIN text frame: its first byte has no mask bit
    with pytest.raises(ValueError):
        framing.count_frames(data, -1)
    with pytest.raises(ValueError):
        framing.count_messages(data, b"h", -1)


# -- the frame builders, parsed back ----------------------------------------------------------


class Built(NamedTuple):
    wire: bytes
    opcode: int
    payload: bytes


frame_kinds = st.sampled_from(["text", "binary", "close"])
close_codes = st.integers(1000, 4999)
close_reasons = st.text(max_size=130)


@st.composite
def built_frames(draw: DrawFn) -> Built:
    kind = draw(frame_kinds)
    if kind == "close":
        code, reason = draw(close_codes), draw(close_reasons)
        body = struct.pack("!H", code) + reason.encode()[:123]
        return Built(framing.frame_close(code, reason), 0x8, body)
    start, n = draw(offsets), draw(payload_lengths)
    payload = FILLER[start : start + n]
    if kind == "text":
        return Built(framing.frame_text(payload), 0x1, payload)
    return Built(framing.frame_binary(payload), 0x2, payload)


@fuzz
@given(st.lists(built_frames(), max_size=5))
def test_built_frames_parse_back(built: list[Built]) -> None:
    """``frame_text``/``frame_binary``/``frame_close`` output, concatenated, parses (model)
    into the same opcodes and payloads (close: code + reason cut to 123 bytes), all of it
    used, and the scanner counts the same frames."""
    data = b"".join(b.wire for b in built)
    assert model.parse(data) == ([(b.opcode, b.payload) for b in built], len(data))
    assert framing.count_frames(data) == (len(built), len(data))
    for b in built:
        assert b.wire[0] & 0x80, "FIN set"
        assert len(b.wire) - len(b.payload) == (
            2 if len(b.payload) < 126 else 4 if len(b.payload) < 65536 else 10
        )
