"""histogram.pyx against the plain-Python model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import histogram_model as model
from nexus._speedups.histogram import Histogram


@given(
    st.lists(st.floats(0.0001, 100, allow_nan=False), min_size=1, max_size=8, unique=True),
    st.lists(st.floats(0, 200, allow_nan=False), max_size=200),
)
def test_cumulative_counts_match(bounds: list[float], values: list[float]) -> None:
    fast, slow = Histogram(bounds), model.Histogram(bounds)
    for v in values:
        fast.observe(v)
        slow.observe(v)
    assert fast.cumulative() == slow.cumulative()
    assert fast.count == slow.count
    assert fast.sum == pytest.approx(slow.sum)
    assert fast.bounds() == slow.bounds


def test_value_on_a_bound_counts_in_that_bucket() -> None:
    h = Histogram([1, 2])
    for v in (1.0, 2.0, 2.5):
        h.observe(v)
    assert h.cumulative() == [1, 2, 3]


def test_needs_bounds() -> None:
    with pytest.raises(ValueError):
        Histogram([])
