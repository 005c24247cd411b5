"""``build_providers`` end to end: configs pointing at the fake provider, the real adapters
and policy between them, fallbacks resolved by name — down to the offline provider."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fakes.provider_server import (
    ProviderServer,
    anthropic_error,
    openai_error,
    openai_frames,
    stream_script,
)
from nexus.extensions.ai.config import ProviderConfig
from nexus.extensions.ai.offline import OfflineProvider
from nexus.extensions.ai.parts import ChatMessage, ChatRequest, Finish, Part, TextDelta, Usage
from nexus.extensions.ai.registry import build_providers
from nexus.extensions.ai.resilient import PolicyEvent

REQUEST = ChatRequest(
    "", (ChatMessage("user", "[#4] ann: lunch is at noon"), ChatMessage("user", "when is lunch?"))
)


async def collect(parts: AsyncIterator[Part]) -> list[Part]:
    return [part async for part in parts]


async def test_a_failing_provider_falls_back_to_offline(server: ProviderServer) -> None:
    server.push(openai_error(503, "busy"), openai_error(503, "busy"))
    events: list[PolicyEvent] = []
    config = ProviderConfig(
        "gpt",
        "openai",
        base_url=f"{server.url}/v1",
        api_key="k",
        model="gpt-x",
        retries=1,
        backoff=0.01,
        fallback="offline",
    )
    providers = build_providers({"gpt": config}, OfflineProvider(), events.append)
    try:
        parts = await collect(providers["gpt"].stream(REQUEST))
    finally:
        for provider in providers.values():
            await provider.close()
    assert len(server.requests) == 2
    assert server.requests[0].json["model"] == "gpt-x"
    text = "".join(p.text for p in parts if isinstance(p, TextDelta))
    assert "lunch is at noon (#4)" in text
    assert parts[-1] == Finish("stop")
    assert [e.action for e in events] == ["retry", "fallback"]


async def test_a_fallback_to_another_hosted_provider(server: ProviderServer) -> None:
    server.push(anthropic_error(401, "invalid x-api-key"), stream_script(openai_frames()))
    configs = {
        "claude": ProviderConfig(
            "claude", "anthropic", base_url=server.url, api_key="k", model="c", fallback="gpt"
        ),
        "gpt": ProviderConfig("gpt", "openai", base_url=f"{server.url}/v1", model="g"),
    }
    providers = build_providers(configs, OfflineProvider())
    try:
        parts = await collect(providers["claude"].stream(REQUEST))
    finally:
        for provider in providers.values():
            await provider.close()
    assert [r.path for r in server.requests] == ["/v1/messages", "/v1/chat/completions"]
    assert server.requests[1].json["model"] == "g"
    assert parts == [TextDelta("Hello"), TextDelta(" world"), Usage(12, 5), Finish("stop")]
    assert {name: p.model for name, p in providers.items()} == {"claude": "c", "gpt": "g"}


def test_an_unknown_fallback_is_refused() -> None:
    config = ProviderConfig("gpt", "openai", base_url="http://x", fallback="nope")
    with pytest.raises(ValueError, match="nope"):
        build_providers({"gpt": config}, OfflineProvider())
