"""Log setup: readable console lines or JSON lines, with trace ids and request/session ids.

Never log tokens or message bodies.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from .tracing import TraceIdFilter

# Context attributes callers may pass with ``extra=`` and the formatters print.
CONTEXT_FIELDS = ("session_id", "user", "request_id", "remote", "trace_id", "span_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None)
        )
        return f"{line} [{context}]" if context else line


# picows logs per connection under this name (gateway.server.PICOWS_LOGGER): accepted and
# disconnected at INFO, and a client's protocol violations (an oversized frame, a bad
# opcode) at ERROR. Those are the client's faults, not the server's.
PICOWS_LOGGER = "nexus.ws"
CLIENT_FAULTS = ("WS parser error", "on_ws_frame raised WSProtocolError")


class ClientFaultFilter(logging.Filter):
    """Logs picows' client-caused errors at INFO (dropped below the configured level)."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self._threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno >= logging.ERROR
            and record.name.startswith(PICOWS_LOGGER)
            and isinstance(record.msg, str)
            and record.msg.startswith(CLIENT_FAULTS)
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return record.levelno >= self._threshold
        return True


def setup_logging(level: str, fmt: str) -> None:
    threshold = logging.getLevelName(level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(TraceIdFilter())
    handler.addFilter(ClientFaultFilter(threshold))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
    # picows' per-connection lines (health probes included) only when debugging.
    logging.getLogger(PICOWS_LOGGER).setLevel(
        logging.DEBUG if threshold <= logging.DEBUG else logging.WARNING
    )
    # Per-request access lines are the metrics' job; keep uvicorn's own logs to warnings.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
