"""An HTTP error answer from a provider, as a ``StreamError``: kind, wait, message.

One mapping for every hosted adapter: the status picks the kind, ``Retry-After`` (seconds
or an HTTP date) or ``retry-after-ms`` gives the wait, and the provider's own message is
taken from the usual JSON shapes (OpenAI, Anthropic, vLLM, Ollama, FastAPI), shortened.
Messages never carry the API key: it is scrubbed should a server echo it back.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from .parts import ErrorKind, StreamError

MESSAGE_MAX = 300  # characters of a provider's error message kept


def kind_for_status(status: int) -> ErrorKind:
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limited"
    if status in (503, 529):  # 529: Anthropic's "overloaded"
        return "overloaded"
    if 400 <= status < 500:
        return "bad_request"
    return "server"


def retry_after(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait as the response says, or None. ``retry-after-ms`` (OpenAI) is the
    more precise and wins; ``Retry-After`` is seconds or an HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def provider_message(body: bytes) -> str:
    """The error message in a provider's error body, or the body's start as text."""
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()
    return message_of(payload) or body.decode("utf-8", "replace").strip()


def message_of(payload: Any) -> str:
    """``error.message`` (OpenAI, Anthropic), ``error`` as text (Ollama), ``message`` or
    ``detail`` (vLLM, FastAPI); empty when none is there."""
    if not isinstance(payload, dict):
        return ""
    error = payload.get("error")
    if isinstance(error, dict):
        error = error.get("message") or error.get("type")
    for candidate in (error, payload.get("message"), payload.get("detail")):
        if isinstance(candidate, str) and candidate:
            return candidate
    return ""


def scrub(message: str, secret: str) -> str:
    """``message`` shortened, with ``secret`` removed should the server have echoed it."""
    if secret:
        message = message.replace(secret, "[redacted]")
    message = " ".join(message.split())
    if len(message) > MESSAGE_MAX:
        message = message[: MESSAGE_MAX - 1] + "…"
    return message


def status_error(
    status: int, headers: Mapping[str, str], body: bytes, secret: str, provider: str
) -> StreamError:
    """The ``StreamError`` for an HTTP error answer."""
    detail = scrub(provider_message(body), secret)
    message = f"{provider}: HTTP {status}" + (f": {detail}" if detail else "")
    return StreamError(kind_for_status(status), message, retry_after(headers), status)
