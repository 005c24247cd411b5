"""Protocol v1, sans-I/O: bytes in -> validated requests, events -> bytes out.

Nothing here touches a socket or the event loop; see docs/protocol.md.
"""

from . import events
from .decoder import Decoder, Limits
from .requests import (
    Auth,
    History,
    MemoryForget,
    MemorySearch,
    MemoryUpdate,
    MemoryWrite,
    MessageCancel,
    MessageDelete,
    MessageEdit,
    MessageSend,
    Ping,
    Request,
    RoomJoin,
    RoomLeave,
    Search,
    TaskRequest,
    ToolApprove,
    Typing,
)

__all__ = [
    "Auth",
    "Decoder",
    "History",
    "Limits",
    "MemoryForget",
    "MemorySearch",
    "MemoryUpdate",
    "MemoryWrite",
    "MessageCancel",
    "MessageDelete",
    "MessageEdit",
    "MessageSend",
    "Ping",
    "Request",
    "RoomJoin",
    "RoomLeave",
    "Search",
    "TaskRequest",
    "ToolApprove",
    "Typing",
    "events",
]
