"""Log lines carry context ids and trace ids; JSON lines are valid JSON."""

import io
import logging

import orjson
from opentelemetry.sdk.trace import TracerProvider

from nexus.observability.logging import ConsoleFormatter, JsonFormatter
from nexus.observability.tracing import TraceIdFilter


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(TraceIdFilter())
    logger = logging.getLogger(f"test-{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_have_context_and_trace_ids() -> None:
    logger, stream = capture(JsonFormatter())
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("work") as span:
        logger.info("closing %d", 4002, extra={"session_id": "abc123", "remote": "1.2.3.4:5"})
    entry = orjson.loads(stream.getvalue())
    assert entry["msg"] == "closing 4002" and entry["level"] == "info"
    assert entry["session_id"] == "abc123" and entry["remote"] == "1.2.3.4:5"
    assert entry["trace_id"] == f"{span.get_span_context().trace_id:032x}"


def test_console_lines_without_span_have_no_trace_id() -> None:
    logger, stream = capture(ConsoleFormatter())
    logger.info("hello", extra={"request_id": "r-1"})
    line = stream.getvalue()
    assert "hello" in line and "request_id=r-1" in line and "trace_id" not in line
