"""Runs write interceptors: verdicts, deadlines, failure policies, quarantine.

The one place that calls interceptor code (like picows' ``_invoke_on_ws_frame`` for its
listeners): whatever an interceptor raises or returns is decided on here.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from ..errors import ERROR_CLASSES, Forbidden, Unavailable
from .hooks import Annotate, Deny, PendingWrite, Replace, Verdict, WriteInterceptor
from .rooms import Room

log = logging.getLogger(__name__)

QUARANTINE_AFTER = 5  # consecutive faults
_BY_CODE = {cls.code: cls for cls in ERROR_CLASSES}


class InterceptorSlot:
    """One registered interceptor and its health."""

    __slots__ = ("interceptor", "calls", "faults", "consecutive", "quarantined", "denials")

    def __init__(self, interceptor: WriteInterceptor) -> None:
        self.interceptor = interceptor
        self.calls = 0
        self.faults = 0
        self.consecutive = 0
        self.quarantined = False
        self.denials = 0

    @property
    def name(self) -> str:
        return self.interceptor.name


class Mutable(PendingWrite, Protocol):
    """What a verdict may change: body and meta."""

    body: str | None
    meta: dict[str, Any] | None


class InterceptorChain:
    def __init__(
        self,
        *,
        max_body_bytes: int,
        max_meta_bytes: int,
        quarantine_after: int = QUARANTINE_AFTER,
        on_quarantine: Callable[[str], None] | None = None,
    ) -> None:
        self._slots: list[InterceptorSlot] = []
        self.active = False  # any interceptor registered
        self._max_body = max_body_bytes
        self._max_meta = max_meta_bytes
        self._quarantine_after = quarantine_after
        self._on_quarantine = on_quarantine

    def __bool__(self) -> bool:
        return self.active

    def _changed(self) -> None:
        # A plain attribute the pipeline reads per write: one load, no method call.
        self.active = bool(self._slots)

    @property
    def slots(self) -> list[InterceptorSlot]:
        return list(self._slots)

    def add(self, interceptor: WriteInterceptor) -> None:
        if any(s.name == interceptor.name for s in self._slots):
            raise ValueError(f"interceptor {interceptor.name} is registered already")
        self._slots.append(InterceptorSlot(interceptor))
        self._changed()

    def remove(self, name: str) -> None:
        self._slots = [s for s in self._slots if s.name != name]
        self._changed()

    def release(self, name: str) -> None:
        """Take an interceptor out of quarantine (after a fix or reload)."""
        for slot in self._slots:
            if slot.name == name:
                slot.quarantined = False
                slot.consecutive = 0

    def select(self, room: Room, kind: str) -> list[InterceptorSlot]:
        """The interceptors concerned by a ``kind`` write to ``room``, in order."""
        out = []
        for slot in self._slots:
            kinds = slot.interceptor.kinds
            if (kinds is None or kind in kinds) and slot.interceptor.wants(room):
                out.append(slot)
        return out

    def run(self, slots: list[InterceptorSlot], write: Mutable) -> Awaitable[None] | None:
        """Apply each slot's verdict to ``write`` in order. Raises the NexusError of a denial.

        Returns None when done, or an awaitable finishing the rest when an interceptor
        answered with an awaitable."""
        for i, slot in enumerate(slots):
            if slot.quarantined:
                self._policy(slot, write, "quarantined")
                continue
            slot.calls += 1
            started = time.perf_counter()
            try:
                verdict = slot.interceptor.intercept(write)
            except Exception as exc:
                self._fault(slot, write, f"raised {exc!r}")
                continue
            if not isinstance(verdict, Verdict) and inspect.isawaitable(verdict):
                return self._finish(slots, i, verdict, write)
            if time.perf_counter() - started > slot.interceptor.deadline:
                self._fault(slot, write, "over its deadline")
                continue
            self._apply(slot, verdict, write)
        return None

    async def _finish(
        self, slots: list[InterceptorSlot], i: int, pending: Awaitable[Verdict], write: Mutable
    ) -> None:
        slot = slots[i]
        try:
            verdict = await asyncio.wait_for(pending, slot.interceptor.deadline)
        except TimeoutError:
            self._fault(slot, write, "over its deadline")
        except Exception as exc:
            self._fault(slot, write, f"raised {exc!r}")
        else:
            self._apply(slot, verdict, write)
        rest = self.run(slots[i + 1 :], write)
        if rest is not None:
            await rest

    def _apply(self, slot: InterceptorSlot, verdict: object, write: Mutable) -> None:
        if isinstance(verdict, Deny):
            slot.consecutive = 0
            slot.denials += 1
            raise _BY_CODE.get(verdict.code, Forbidden)(verdict.reason)
        if isinstance(verdict, Replace):
            body = write.body if verdict.body is None else verdict.body
            meta = write.meta if verdict.meta is None else verdict.meta
        elif isinstance(verdict, Annotate) and isinstance(verdict.meta, dict):
            body, meta = write.body, {**(write.meta or {}), **verdict.meta}
        elif isinstance(verdict, Verdict) and not isinstance(verdict, Annotate):
            slot.consecutive = 0
            return  # ALLOW
        else:
            self._fault(slot, write, f"answered {verdict!r}, not a verdict")
            return
        problem = self._unstorable(body, meta)
        if problem:
            self._fault(slot, write, problem)
            return
        slot.consecutive = 0
        write.body, write.meta = body, meta

    def _unstorable(self, body: object, meta: object) -> str | None:
        if body is not None and (
            not isinstance(body, str)
            or not body
            or len(body.encode("utf-8", "surrogatepass")) > self._max_body
        ):
            return f"replaced the body with one that is empty, not text or over {self._max_body}"
        if meta is not None:
            if not isinstance(meta, dict):
                return "replaced meta with a non-object"
            try:
                size = len(orjson.dumps(meta))
            except (orjson.JSONEncodeError, TypeError):
                return "replaced meta with something that is not JSON"
            if size > self._max_meta:
                return f"replaced meta with more than {self._max_meta} bytes"
        return None

    def _fault(self, slot: InterceptorSlot, write: Mutable, what: str) -> None:
        slot.faults += 1
        slot.consecutive += 1
        log.warning("interceptor %s %s (fault %d in a row)", slot.name, what, slot.consecutive)
        if not slot.quarantined and slot.consecutive >= self._quarantine_after:
            slot.quarantined = True
            log.error(
                "interceptor %s quarantined after %d faults in a row", slot.name, slot.consecutive
            )
            if self._on_quarantine is not None:
                self._on_quarantine(slot.name)
        self._policy(slot, write, what)

    @staticmethod
    def _policy(slot: InterceptorSlot, write: Mutable, what: str) -> None:
        if slot.interceptor.failure_policy == "closed":
            raise Unavailable(f"write refused: the {slot.name} check is unavailable ({what})")
