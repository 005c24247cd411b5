"""Compiled hot path: WebSocket framing, room fan-out with write coalescing, rate limiting.

Plain-Python models of each module live in ``tests/models`` as the oracle the
compiled versions are tested against; there is no runtime fallback.
"""
