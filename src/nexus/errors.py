"""The NexusError hierarchy: one class per protocol error code.

Errors are raised where the problem is found and converted once at the edge:
the gateway turns them into an ``error`` event (and maybe a close), the HTTP API
into a status with a JSON body.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CloseCode:
    """WebSocket close codes. 4000-4499: the client may reconnect; 4500-4999: it should not."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down / heartbeat lost
    PROTOCOL_ERROR = 1002  # RFC 6455 violation: reserved bits, bad close code, bad fragments
    INVALID_DATA = 1007  # a text message that is not UTF-8
    MESSAGE_TOO_BIG = 1009  # frame or reassembled message above max_frame_bytes
    INTERNAL_ERROR = 1011
    AUTH_TIMEOUT = 4001  # no auth within auth_timeout
    SLOW_CONSUMER = 4002  # outbound buffer limit exceeded
    TOKEN_EXPIRED = 4003  # the token's exp passed: reconnect with a fresh token
    TOO_MANY_REFUSED = 4004  # kept sending frames that were refused (or flooded the reader)
    UNAUTHORIZED = 4501  # bad token, or a request before auth
    FORCED = 4502  # disconnected by an administrator


class NexusError(Exception):
    """Base of every error a client can be told about."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    close_code: ClassVar[int | None] = None  # set when the error ends the connection

    def __init__(self, message: str, *, request_id: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id

    def details(self) -> dict[str, Any]:
        """Extra fields carried by the error event (e.g. ``retry_after_ms``)."""
        return {}


class BadRequest(NexusError):
    code = "bad_request"
    http_status = 400


class Unauthorized(NexusError):
    code = "unauthorized"
    http_status = 401
    close_code = CloseCode.UNAUTHORIZED


class Forbidden(NexusError):
    code = "forbidden"
    http_status = 403


class NotFound(NexusError):
    code = "not_found"
    http_status = 404


class Conflict(NexusError):
    code = "conflict"
    http_status = 409


class TooLarge(NexusError):
    code = "too_large"
    http_status = 413


class LimitExceeded(NexusError):
    code = "limit_exceeded"
    http_status = 429


class RateLimited(NexusError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after_ms: int, request_id: Any = None) -> None:
        super().__init__(message, request_id=request_id)
        self.retry_after_ms = retry_after_ms

    def details(self) -> dict[str, Any]:
        return {"retry_after_ms": self.retry_after_ms}


class Internal(NexusError):
    code = "internal"
    http_status = 500


class Unavailable(NexusError):
    code = "unavailable"
    http_status = 503


class ConfigError(Exception):
    """Invalid configuration; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"invalid setting {setting}: {problem}")
        self.setting = setting
        self.problem = problem


ERROR_CLASSES: tuple[type[NexusError], ...] = (
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    TooLarge,
    LimitExceeded,
    RateLimited,
    Internal,
    Unavailable,
)


_BY_CODE: dict[str, type[NexusError]] = {cls.code: cls for cls in ERROR_CLASSES}


def error_for(code: str, message: str) -> NexusError:
    """The NexusError of a protocol error code (an ``error`` event turned back into one)."""
    return (
        _BY_CODE.get(code, Internal)(message)
        if code != "rate_limited"
        else RateLimited(message, retry_after_ms=1000)
    )
