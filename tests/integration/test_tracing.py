"""One HTTP-posted message leaves a trace with the pipeline's spans (in-memory exporter,
server built in-process so the test can read the exporter)."""

from __future__ import annotations

from pathlib import Path

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from nexus.app import build
from nexus.config import load_settings

from .harness import AUDIENCE, ISSUER, SECRET, Client, token


async def test_http_post_trace_has_pipeline_spans(tmp_path: Path) -> None:
    import asyncio

    settings = load_settings(
        environ={},
        overrides={
            "data_dir": str(tmp_path),
            "port": "0",
            "http_port": "0",
            "auth_secret": SECRET,
            "auth_issuer": ISSUER,
            "auth_audience": AUDIENCE,
        },
    )
    exporter = InMemorySpanExporter()
    app = build(settings, asyncio.get_running_loop(), span_exporter=exporter)
    ws_port, http_port = await app.start()
    try:
        admin = {"Authorization": f"Bearer {token('ada', roles=('admin',))}"}
        ws = await Client.connect(f"ws://127.0.0.1:{ws_port}/ws", token("mia"))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            assert (
                await http.post("/v1/rooms", json={"name": "traced"}, headers=admin)
            ).status_code == 201
            await ws.join("traced")
            exporter.clear()
            r = await http.post("/v1/rooms/traced/messages", json={"body": "hi"}, headers=admin)
            assert r.status_code == 201
        assert (await ws.next("message"))["body"] == "hi"
        await ws.close()
    finally:
        await app.stop()
    finished = exporter.get_finished_spans()
    (http_span,) = [s for s in finished if s.name == "HTTP POST /v1/rooms/{room}/messages"]
    # Closing the socket and stopping the app write (and trace) entries of their own: keep
    # the spans of the posted message's trace, so a later batch cannot stand in for its own.
    spans = {s.name: s for s in finished if s.context.trace_id == http_span.context.trace_id}
    for name in (
        "nexus.pipeline.validate",
        "nexus.pipeline.batch",
        "nexus.pipeline.commit",
        "nexus.pipeline.fanout",
    ):
        assert name in spans, sorted(spans)
        assert spans[name].context.trace_id == http_span.context.trace_id
    batch = spans["nexus.pipeline.batch"]
    assert batch.attributes["nexus.batch.entries"] == 1
    assert batch.parent.span_id == spans["nexus.pipeline.validate"].context.span_id
    assert spans["nexus.pipeline.commit"].parent.span_id == batch.context.span_id
    assert spans["nexus.pipeline.fanout"].parent.span_id == batch.context.span_id
    assert http_span.attributes["http.response.status_code"] == 201
