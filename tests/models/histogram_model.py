"""Cumulative fixed-bucket histogram, the obvious way."""

from __future__ import annotations


class Histogram:
    def __init__(self, bounds: list[float]) -> None:
        if not bounds:
            raise ValueError("no bounds")
        self.bounds = sorted(float(b) for b in bounds)
        self.values: list[float] = []

    def observe(self, value: float) -> None:
        self.values.append(value)

    def cumulative(self) -> list[int]:
        counts = [sum(1 for v in self.values if v <= b) for b in self.bounds]
        return [*counts, len(self.values)]

    @property
    def sum(self) -> float:
        return sum(self.values)

    @property
    def count(self) -> int:
        return len(self.values)
