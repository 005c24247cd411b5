"""The fake provider server, one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fakes.provider_server import ProviderServer


@pytest.fixture
async def server() -> AsyncIterator[ProviderServer]:
    async with ProviderServer() as srv:
        yield srv
