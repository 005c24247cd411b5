"""The search and memory requests: decoded with their limits, answered with their events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nexus.errors import BadRequest, NexusError, TooLarge
from nexus.protocol import (
    Decoder,
    MemoryForget,
    MemorySearch,
    MemoryUpdate,
    MemoryWrite,
    Search,
    events,
)


def decode(obj: dict[str, Any]) -> Any:
    return Decoder().decode(orjson.dumps(obj))


def test_requests_decode() -> None:
    assert decode({"type": "search", "id": 1, "q": "billing"}) == Search(1, "billing", None, 10)
    assert decode({"type": "search", "id": 2, "q": "x", "room": "ops", "limit": 50}) == Search(
        2, "x", "ops", 50
    )
    w = decode(
        {"type": "memory.write", "id": 3, "text": "t", "scope": "room", "room": "ops", "extra": 1}
    )
    assert w == MemoryWrite(3, {"text": "t", "scope": "room", "room": "ops"})  # extra dropped
    assert decode({"type": "memory.search", "id": 4}) == MemorySearch(4)
    assert decode(
        {"type": "memory.search", "id": 5, "q": "a", "scope": "tenant", "history": True}
    ) == MemorySearch(5, "a", "tenant", None, 10, True)
    assert decode(
        {"type": "memory.update", "id": 6, "memory_id": "m1", "text": "new", "scope": "x"}
    ) == MemoryUpdate(6, "m1", {"text": "new"})  # scope cannot change in an update
    assert decode({"type": "memory.forget", "id": 7, "memory_id": "m1"}) == MemoryForget(7, "m1")


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        ({"type": "search", "id": 1}, BadRequest),
        ({"type": "search", "id": 1, "q": "  "}, BadRequest),
        ({"type": "search", "id": 1, "q": "x" * 1025}, TooLarge),
        ({"type": "search", "id": 1, "q": "x", "limit": 51}, BadRequest),
        ({"type": "search", "id": 1, "q": "x", "limit": True}, BadRequest),
        ({"type": "search", "id": 1, "q": "x", "room": "bad room"}, BadRequest),
        ({"type": "memory.search", "id": 1, "history": "yes"}, BadRequest),
        ({"type": "memory.search", "id": 1, "scope": 3}, BadRequest),
        ({"type": "memory.update", "id": 1, "text": "x"}, BadRequest),
        ({"type": "memory.forget", "id": 1, "memory_id": ""}, BadRequest),
        ({"type": "memory.write", "id": 1, "text": "x" * 9000}, TooLarge),
    ],
)
def test_bad_requests_carry_their_id(obj: dict[str, Any], error: type[NexusError]) -> None:
    with pytest.raises(error) as caught:
        decode(obj)
    assert caught.value.request_id == 1


def test_answers() -> None:
    hit = {"room": "ops", "seq": 3, "snippet": "**x**"}
    assert orjson.loads(events.search_results(1, "x", [hit])) == {
        "type": "search.results",
        "id": 1,
        "q": "x",
        "hits": [hit],
    }
    assert orjson.loads(events.memory_record("r", {"id": "m"})) == {
        "type": "memory.record",
        "id": "r",
        "memory": {"id": "m"},
    }
    assert orjson.loads(events.memory_results(None, [])) == {
        "type": "memory.results",
        "id": None,
        "memories": [],
    }
