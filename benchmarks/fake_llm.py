"""`python -m benchmarks.fake_llm [--chunks 3] [--chunk-chars 8] [--delay 0]`: a model that
answers at once, for measuring what the server adds around a provider.

A real HTTP/1.1 server on 127.0.0.1 (port 0 unless ``--port``) speaking the OpenAI chat
completions wire protocol: ``POST .../chat/completions`` with ``"stream": true`` is
answered with server-sent events, one per chunk (``data: {chunk}\\n\\n``) — a role chunk,
``--chunks`` text chunks of ``--chunk-chars`` characters each ``--delay`` seconds apart, a
finish chunk, a usage chunk — then ``data: [DONE]``. The body is chunked, so the
connection stays open for the next request, as with a hosted API. Without ``stream`` the
same text comes back as one ``chat.completion`` object. ``GET .../models`` lists the one
model. Nothing is checked (any key, any model): it is a benchmark's stand-in, not a mock
with expectations.

It prints ``fake llm listening on http://127.0.0.1:PORT/v1`` once ready (how the benchmark
finds it) and runs until terminated. As a separate process, its own work and pacing stay
out of the load generator's event loop and out of the server's CPU figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass

import orjson
import uvloop

MODEL = "fake"
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()


@dataclass(frozen=True)
class Reply:
    """What every request is answered with."""

    chunks: int = 3
    chunk_chars: int = 8
    delay: float = 0.0  # seconds between two text chunks

    def pieces(self) -> list[str]:
        """The text chunks: words cut to ``chunk_chars`` characters each."""
        text = " ".join(itertools.islice(itertools.cycle(WORDS), self.chunks * self.chunk_chars))
        n = self.chunk_chars
        return [text[i * n : (i + 1) * n] for i in range(self.chunks)]

    def text(self) -> str:
        return "".join(self.pieces())


def _chunk(cid: str, created: int, delta: dict[str, str], finish: str | None) -> bytes:
    return orjson.dumps(
        {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def _usage(prompt_chars: int, text: str) -> dict[str, int]:
    prompt, completion = prompt_chars // 4 + 1, len(text) // 4 + 1
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _event(data: bytes) -> bytes:
    """One server-sent event as one HTTP chunk."""
    payload = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class FakeModel:
    """The request handler: reads requests off a connection and writes the answers."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests = 0
        self._ids = itertools.count(1)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is done."""
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD:
            return False
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, path, *_ = [*request_line.split(" "), "", ""]
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            return False
        body = await reader.readexactly(length) if length else b""
        keep = headers.get("connection", "").lower() != "close"
        path = path.split("?", 1)[0].rstrip("/")
        if method == "POST" and path.endswith("/chat/completions"):
            try:
                request = orjson.loads(body) if body else {}
            except orjson.JSONDecodeError:
                request = None
            if not isinstance(request, dict):
                self._plain(writer, 400, {"error": {"message": "body is not a JSON object"}}, keep)
            else:
                self.requests += 1
                if request.get("stream"):
                    await self._stream(writer, len(body), keep)
                else:
                    self._complete(writer, len(body), keep)
        elif method == "GET" and path.endswith("/models"):
            self._plain(
                writer, 200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]}, keep
            )
        else:
            self._plain(writer, 404, {"error": {"message": f"no route {method} {path}"}}, keep)
        await writer.drain()
        return keep

    def _plain(self, writer: asyncio.StreamWriter, status: int, data: object, keep: bool) -> None:
        body = orjson.dumps(data)
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep else 'close'}"
            "\r\n\r\n".encode()
            + body
        )

    def _complete(self, writer: asyncio.StreamWriter, prompt_chars: int, keep: bool) -> None:
        text = self.reply.text()
        self._plain(
            writer,
            200,
            {
                "id": f"chatcmpl-{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(prompt_chars, text),
            },
            keep,
        )

    async def _stream(self, writer: asyncio.StreamWriter, prompt_chars: int, keep: bool) -> None:
        cid, created = f"chatcmpl-{next(self._ids)}", int(time.time())
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: "
            + (b"keep-alive" if keep else b"close")
            + b"\r\n\r\n"
            + _event(_chunk(cid, created, {"role": "assistant", "content": ""}, None))
        )
        delay = self.reply.delay
        for i, piece in enumerate(self.reply.pieces()):
            if delay > 0 and i:
                await writer.drain()
                await asyncio.sleep(delay)
            writer.write(_event(_chunk(cid, created, {"content": piece}, None)))
        usage = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL,
            "choices": [],
            "usage": _usage(prompt_chars, self.reply.text()),
        }
        writer.write(
            _event(_chunk(cid, created, {}, "stop"))
            + _event(orjson.dumps(usage))
            + _event(b"[DONE]")
            + b"0\r\n\r\n"
        )


async def serve(reply: Reply, port: int = 0) -> None:
    model = FakeModel(reply)
    server = await asyncio.start_server(model.serve, "127.0.0.1", port, limit=MAX_HEAD)
    bound = server.sockets[0].getsockname()[1]
    print(f"fake llm listening on http://127.0.0.1:{bound}/v1", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fake_llm", description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--chunks", type=int, default=3, help="text chunks per reply")
    p.add_argument("--chunk-chars", type=int, default=8, help="characters per text chunk")
    p.add_argument("--delay", type=float, default=0.0, help="seconds between text chunks")
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(Reply(args.chunks, args.chunk_chars, args.delay), args.port))


if __name__ == "__main__":
    main()
