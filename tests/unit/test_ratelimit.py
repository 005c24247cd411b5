"""ratelimit.pyx against the plain-Python model over random operation sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import ratelimit_model as model
from nexus._speedups import ratelimit

ops = st.lists(
    st.tuples(st.floats(0, 2, allow_nan=False), st.sampled_from([1.0, 2.0, 0.5])), max_size=60
)
rates = st.floats(0.5, 1000, allow_nan=False)
bursts = st.integers(1, 50)


@given(rates, bursts, ops)
def test_take_matches_the_model(rate: float, burst: int, steps: list[tuple[float, float]]) -> None:
    fast, slow = ratelimit.TokenBucket(rate, burst), model.TokenBucket(rate, burst)
    now = 0.0
    for dt, cost in steps:
        now += dt
        assert fast.take(now, cost) == slow.take(now, cost)
        assert fast.available(now) == pytest.approx(slow.available(now))


@given(rates, bursts, rates, bursts, ops)
def test_take_both_spends_from_both_or_neither(
    r1: float, b1: int, r2: float, b2: int, steps: list[tuple[float, float]]
) -> None:
    fa, fb = ratelimit.TokenBucket(r1, b1), ratelimit.TokenBucket(r2, b2)
    ma, mb = model.TokenBucket(r1, b1), model.TokenBucket(r2, b2)
    now = 0.0
    for dt, cost in steps:
        now += dt
        before = (fa.available(now), fb.available(now))
        result = ratelimit.take_both(fa, fb, now, cost)
        assert result == model.take_both(ma, mb, now, cost)
        if result:
            assert (fa.available(now), fb.available(now)) == before
        else:
            assert fa.available(now) == pytest.approx(before[0] - cost)


def test_refusal_says_when_to_come_back() -> None:
    bucket = ratelimit.TokenBucket(10, 2)
    assert bucket.take(0) == 0 and bucket.take(0) == 0
    assert bucket.take(0) == 100  # one token at 10/s
    assert bucket.take(0.05) == 50
    assert bucket.take(0.1) == 0


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 5), (1, 0.5)])
def test_constructor_validation(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        ratelimit.TokenBucket(rate, burst)
