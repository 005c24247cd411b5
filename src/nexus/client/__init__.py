"""The Python SDK for Nexus: an asyncio client (``NexusClient``) that keeps a session
through reconnects — rooms resumed from their last seq, sends acknowledged once — and a
small blocking wrapper for scripts (``SyncClient``). docs/client.md."""

from .backoff import Backoff
from .client import ConnectionClosed, NexusClient, NexusError, RequestTimeout
from .events import (
    Connection,
    Entry,
    Event,
    Message,
    Presence,
    ReplyDelta,
    ReplyEnded,
    ReplyStarted,
    Typing,
)
from .sync import SyncClient

__all__ = [
    "Backoff",
    "Connection",
    "ConnectionClosed",
    "Entry",
    "Event",
    "Message",
    "NexusClient",
    "NexusError",
    "Presence",
    "ReplyDelta",
    "ReplyEnded",
    "ReplyStarted",
    "RequestTimeout",
    "SyncClient",
    "Typing",
]
