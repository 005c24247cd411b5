"""framing.pyx against the plain-Python model, byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import framing_model as model
from nexus._speedups import framing

BOUNDARY_SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_text_frames_across_length_encodings(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert framing.frame_text(payload) == model.frame_text(payload)
    assert framing.frame_binary(payload) == model.frame(0x2, payload)
    assert model.parse(framing.frame_text(payload)) == (
        [(0x1, payload)],
        len(framing.frame_text(payload)),
    )


@given(st.binary(max_size=70000))
def test_any_payload_frames_like_the_model(payload: bytes) -> None:
    assert framing.frame_text(payload) == model.frame_text(payload)


@given(st.integers(1000, 4999), st.text(max_size=200))
def test_close_frames(code: int, reason: str) -> None:
    # Reasons are cut to 123 bytes (the cut may split a character) on both sides alike.
    assert framing.frame_close(code, reason) == model.frame_close(code, reason)


@pytest.mark.parametrize("code", [0, 999, 5000, -1])
def test_close_code_out_of_range(code: int) -> None:
    with pytest.raises(ValueError):
        framing.frame_close(code)


@given(st.lists(st.binary(max_size=300), max_size=8), st.data())
def test_counting_stops_at_partial_frames(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(framing.frame_text(p) for p in payloads)
    cut = data.draw(st.integers(0, len(stream)))
    frames, used = model.parse(stream[:cut])
    assert framing.count_frames(stream[:cut]) == (len(frames), used)


def test_counting_messages_by_prefix() -> None:
    stream = (
        framing.frame_text(b'{"type":"message","x":1}')
        + framing.frame_text(b'{"type":"ack"}')
        + framing.frame_text(b'{"type":"message"}')
        + framing.frame_text(b'{"ty')
    )
    assert framing.count_messages(stream, b'{"type":"message"') == (4, 2, len(stream))
    assert framing.count_messages(stream[:-2], b'{"type":"message"')[:2] == (3, 2)


def test_masked_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        framing.count_frames(b"\x81\x85\x00\x00\x00\x00hello")


@given(st.binary(max_size=125))
def test_ping_and_pong_frames_like_the_model(payload: bytes) -> None:
    assert framing.frame_ping(payload) == model.frame_ping(payload)
    assert framing.frame_pong(payload) == model.frame_pong(payload)
    # memoryviews (the picows payload type) frame the same bytes
    assert framing.frame_pong(memoryview(payload)) == model.frame_pong(payload)


def test_control_frames_are_capped_at_125_bytes() -> None:
    assert model.parse(framing.frame_pong(b"x" * 125))[0] == [(0xA, b"x" * 125)]
    for build in (framing.frame_ping, framing.frame_pong):
        with pytest.raises(ValueError):
            build(b"x" * 126)
