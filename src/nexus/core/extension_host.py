"""What an extension gets to work with: the core services and the two seams.

An extension (a Python module named in the ``extensions`` setting, and later the Wasm
plugin runtime, the agent runtime, MCP) receives one ``ExtensionHost`` at start. It may
register interceptors and observers, join rooms as an in-process member, and write
through ``writes`` like any caller. It never sees the gateway or the HTTP layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._speedups.router import Router
from ..config import Settings
from .access import AccessRules
from .hooks import CommitObserver, WriteInterceptor
from .interceptors import InterceptorChain
from .observers import BATCH_MAX, ObserverRunner, Observers
from .pipeline import MessagePipeline
from .rooms import RoomDirectory
from .writes import RoomWrites


@dataclass
class ExtensionHost:
    settings: Settings
    store: Any  # store.LmdbStore: reads are memory-mapped and safe on the loop
    pipeline: MessagePipeline
    rooms: RoomDirectory
    access: AccessRules
    writes: RoomWrites
    router: Router
    services: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = field(default_factory=list)

    @property
    def interceptors(self) -> InterceptorChain:
        return self.pipeline.interceptors

    @property
    def observers(self) -> Observers:
        return self.pipeline.observers

    def add_interceptor(self, interceptor: WriteInterceptor) -> None:
        """Consult ``interceptor`` before commit, after those added before it."""
        self.interceptors.add(interceptor)

    def add_observer(self, observer: CommitObserver) -> ObserverRunner:
        """Hand committed entries to ``observer`` (its own task, cursor and queue)."""
        runner = ObserverRunner(
            observer,
            self.store,
            self.rooms.head,
            self.pipeline.submit_meta,
            batch_max=getattr(observer, "batch_max", BATCH_MAX),  # an observer may ask more
        )
        self.observers.add(runner)
        return runner

    def add_service(self, name: str, start: Callable[[], Any], stop: Callable[[], Any]) -> None:
        """Run ``start()`` when the server starts and ``stop()`` when it stops (either may
        be a coroutine function)."""
        self.services.append((name, start, stop))
