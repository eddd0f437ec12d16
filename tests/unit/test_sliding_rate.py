"""messages_per_second's window: whole seconds only, the current one left out, old ones dropped."""

from __future__ import annotations

from libs.metrics import SlidingRate


def test_rate_is_the_mean_of_the_last_whole_seconds() -> None:
    rate = SlidingRate(window=10)
    for second in range(100, 130):
        for _ in range(second % 3 + 1):
            rate.add(now=second + 0.5)
    assert rate.rate(now=130.2) == sum(s % 3 + 1 for s in range(120, 130)) / 10
    rate.add(5, now=130.3)  # the filling second does not count yet
    assert rate.rate(now=130.9) == rate.rate(now=130.2)
    assert rate.rate(now=131.0) == (sum(s % 3 + 1 for s in range(121, 130)) + 5) / 10


def test_a_quiet_window_reads_zero() -> None:
    rate = SlidingRate(window=10)
    rate.add(100, now=5.0)
    assert rate.rate(now=6.0) == 10.0
    assert rate.rate(now=15.9) == 10.0  # second 5 is still among the ten before 15
    assert rate.rate(now=16.0) == 0.0
