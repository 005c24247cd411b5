"""A fake AI provider: a real HTTP/1.1 server on 127.0.0.1, driven by scripts.

Each request is answered by the next pushed ``Script``: a status, headers, and body
chunks each sent after its delay — as HTTP chunks for a stream, or with a Content-Length
for an error body. A script may reset the connection (RST) after chunk k, or stall: keep
the connection open after its chunks without ending the body. The server records every
request (method, path, headers, JSON body) and whether the client hung up before the
script ended, as an event a cancellation test can wait for.

The builders below write the event streams of OpenAI's chat completions and Anthropic's
Messages API as those services send them (the official SDKs parse them, see
``tests/contract/test_sdk_fidelity.py``), and cut them up the ways networks do.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SSE_HEADERS = (("content-type", "text/event-stream"), ("cache-control", "no-cache"))
JSON_HEADERS = (("content-type", "application/json"),)
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests"}


@dataclass
class Script:
    """One answer. ``chunks`` are (delay in seconds, bytes) pairs."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = SSE_HEADERS
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    chunked: bool = True  # a stream; False: one body with a Content-Length
    reset_after: int | None = None  # reset the connection after sending chunk k (0-based)
    stall: bool = False  # after the chunks, neither end the body nor close


@dataclass
class Received:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]  # names lowercased
    body: bytes
    client_closed: asyncio.Event = field(default_factory=asyncio.Event)  # hung up early
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the answer ended

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class ProviderServer:
    """``async with ProviderServer() as server``: ``server.url``, ``push(scripts)``,
    ``requests``. A request with no script left gets a 500 saying so."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: deque[Script] = deque()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> ProviderServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def push(self, *scripts: Script) -> None:
        self._scripts.extend(scripts)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            received = await self._read_request(reader)
            if received is None:
                return
            self.requests.append(received)
            script = self._scripts.popleft() if self._scripts else _no_script()
            watch = asyncio.ensure_future(reader.read(1))  # completes when the client leaves
            try:
                if not await _play(script, writer, watch):
                    received.client_closed.set()
            finally:
                watch.cancel()
                received.done.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> Received | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return Received(method, path, headers, body)


async def _play(script: Script, writer: asyncio.StreamWriter, watch: asyncio.Future[bytes]) -> bool:
    """Send ``script``; False if the client hung up before it ended."""

    async def pause(seconds: float) -> bool:
        if seconds > 0:
            await asyncio.wait({watch}, timeout=seconds)
        return not watch.done()

    head = [f"HTTP/1.1 {script.status} {REASONS.get(script.status, 'Status')}"]
    head += [f"{name}: {value}" for name, value in script.headers]
    if script.chunked:
        head.append("transfer-encoding: chunked")
    else:
        head.append(f"content-length: {sum(len(data) for _, data in script.chunks)}")
    head.append("connection: close")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    for i, (delay, data) in enumerate(script.chunks):
        if not await pause(delay):
            return False
        if data:
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n" if script.chunked else data)
        try:
            await writer.drain()
        except ConnectionError:
            return False
        if script.reset_after == i:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # linger 0: the close is an RST
            return True
    if script.stall:
        await asyncio.wait({watch})
        return False
    if script.chunked:
        writer.write(b"0\r\n\r\n")
    try:
        await writer.drain()
    except ConnectionError:
        return False
    return not watch.done()


def _no_script() -> Script:
    return json_script(500, {"error": {"message": "the fake has no script for this request"}})


# --- scripts -------------------------------------------------------------------------------


def json_script(status: int, payload: Any, headers: Sequence[tuple[str, str]] = ()) -> Script:
    """An answer with a JSON body (an error, usually)."""
    body = json.dumps(payload).encode()
    return Script(status, (*JSON_HEADERS, *headers), [(0.0, body)], chunked=False)


def stream_script(
    frames: Sequence[bytes],
    *,
    line_end: str = "\n",
    split: int | None = None,
    pings: bool = False,
    first_delay: float = 0.0,
    delay: float = 0.0,
    reset_after: int | None = None,
    stall: bool = False,
) -> Script:
    """An event stream of ``frames`` (each a whole event written with ``\\n``).

    Args:
        line_end: "\\r\\n" or "\\r" to rewrite the line ends.
        split: cut the whole stream into pieces of this many bytes (mid-line, mid-UTF-8).
        pings: a comment line before every event, as keep-alive pings are sent.
        first_delay: seconds before the first chunk (a slow first token).
        delay: seconds before each later chunk.
        reset_after: reset the connection after this chunk.
        stall: keep the connection open after the last chunk.
    """
    frames = [b": ping\n\n" + f if pings else f for f in frames]
    if line_end != "\n":
        frames = [f.replace(b"\n", line_end.encode()) for f in frames]
    if split:
        whole = b"".join(frames)
        frames = [whole[i : i + split] for i in range(0, len(whole), split)]
    chunks = [(first_delay if i == 0 else delay, f) for i, f in enumerate(frames)]
    return Script(chunks=chunks, reset_after=reset_after, stall=stall)


# tool calls for the builders: (id, name, argument fragments)
ToolScript = tuple[str, str, Sequence[str]]


def _data(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def openai_frames(
    text: Sequence[str] = ("Hello", " world"),
    *,
    tool_calls: Sequence[ToolScript] = (),
    finish: str | None = "stop",
    usage: tuple[int, int] | None = (12, 5),
    done: bool = True,
    model: str = "gpt-test",
) -> list[bytes]:
    """A streamed chat completion as OpenAI sends it: a role chunk, content chunks, tool
    call chunks (id and name first, then argument fragments), the finish chunk, a usage
    chunk with empty choices, ``[DONE]``."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _data(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "choices": [choice],
            }
        )

    frames = [chunk({"role": "assistant", "content": ""})]
    frames += [chunk({"content": piece}) for piece in text]
    for index, (call_id, name, fragments) in enumerate(tool_calls):
        first = {"index": index, "id": call_id, "type": "function"}
        frames.append(
            chunk({"tool_calls": [{**first, "function": {"name": name, "arguments": ""}}]})
        )
        frames += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": f}}]})
            for f in fragments
        ]
    if finish is not None:
        frames.append(chunk({}, finish))
    if usage is not None:
        prompt, completion = usage
        frames.append(
            _data(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "total_tokens": prompt + completion,
                    },
                }
            )
        )
    if done:
        frames.append(b"data: [DONE]\n\n")
    return frames


def openai_error_frame(message: str = "The server had an error") -> bytes:
    return _data({"error": {"message": message, "type": "server_error", "code": None}})


def openai_error(status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> Script:
    kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
    payload = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return json_script(status, payload, headers)


def _event(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\n".encode() + _data(payload)


def anthropic_frames(
    text: Sequence[str] = ("Hello", " world"),
    *,
    tool_calls: Sequence[ToolScript] = (),
    stop: str | None = "end_turn",
    usage: tuple[int, int] = (12, 5),
    message_stop: bool = True,
    model: str = "claude-test",
) -> list[bytes]:
    """A streamed Messages reply as Anthropic sends it: message_start (input usage), a
    ping, a text block, tool_use blocks (arguments as input_json_delta fragments),
    message_delta (stop reason, output usage), message_stop."""
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": 1},
    }
    frames = [_event({"type": "message_start", "message": message}), _event({"type": "ping"})]
    index = 0
    if text:
        block = {"type": "text", "text": ""}
        frames.append(_event({"type": "content_block_start", "index": 0, "content_block": block}))
        frames += [
            _event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                }
            )
            for piece in text
        ]
        frames.append(_event({"type": "content_block_stop", "index": 0}))
        index = 1
    for call_id, name, fragments in tool_calls:
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        frames.append(
            _event({"type": "content_block_start", "index": index, "content_block": block})
        )
        frames += [
            _event(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": f},
                }
            )
            for f in fragments
        ]
        frames.append(_event({"type": "content_block_stop", "index": index}))
        index += 1
    if stop is not None:
        frames.append(
            _event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": usage[1]},
                }
            )
        )
    if message_stop:
        frames.append(_event({"type": "message_stop"}))
    return frames


def anthropic_error_frame(kind: str = "overloaded_error", message: str = "Overloaded") -> bytes:
    return _event({"type": "error", "error": {"type": kind, "message": message}})


def anthropic_error(status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> Script:
    kind = {
        401: "authentication_error",
        429: "rate_limit_error",
        529: "overloaded_error",
        503: "overloaded_error",
    }.get(status, "api_error")
    payload = {"type": "error", "error": {"type": kind, "message": message}}
    return json_script(status, payload, headers)
