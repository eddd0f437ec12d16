"""The MySQL circuit breaker (libs/breaker.py): fail fast while open, one trial at a time,
waits doubling up to a cap, closed by any answer. Trio's autojump clock drives the time."""

from __future__ import annotations

import pytest
import trio

from libs.breaker import Breaker
from libs.errors import UNAVAILABLE, Unavailable


@pytest.fixture
def clock(autojump_clock):
    return autojump_clock


def _refused(breaker: Breaker) -> bool:
    try:
        breaker.admit()
    except Unavailable as exc:
        assert exc.code == UNAVAILABLE and exc.details["mysql"] == "circuit open"
        return True
    return False


async def test_closed_lets_every_call_through(clock) -> None:
    breaker = Breaker("mysql", 0.1, 5.0)
    assert [breaker.admit() for _ in range(3)] == [False, False, False]
    assert not breaker.is_open


async def test_open_fails_fast_until_the_wait_is_over_then_admits_one_trial(clock) -> None:
    breaker = Breaker("mysql", 0.1, 5.0)
    breaker.failed()
    assert _refused(breaker)
    await trio.sleep(0.099)
    assert _refused(breaker)
    await trio.sleep(0.002)
    assert breaker.admit() is True  # the trial
    assert _refused(breaker)  # nobody else while the trial runs
    breaker.succeeded()
    assert not breaker.is_open and breaker.admit() is False


async def test_waits_double_with_each_failure_in_a_row_up_to_the_cap(clock) -> None:
    breaker = Breaker("mysql", 0.1, 1.0)
    for wait in (0.1, 0.2, 0.4, 0.8, 1.0, 1.0):
        breaker.failed()
        await trio.sleep(wait - 0.001)
        assert _refused(breaker)
        await trio.sleep(0.002)
        assert breaker.admit() is True  # the trial, which fails again


async def test_success_resets_the_wait(clock) -> None:
    breaker = Breaker("mysql", 0.1, 5.0)
    for _ in range(4):
        breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert breaker.open_until == pytest.approx(trio.current_time() + 0.1)


async def test_an_abandoned_trial_lets_the_next_call_try(clock) -> None:
    breaker = Breaker("mysql", 0.1, 5.0)
    breaker.failed()
    await trio.sleep(0.2)
    assert breaker.admit() is True
    breaker.abandoned()
    assert breaker.admit() is True
    assert breaker.is_open  # still open until a trial gets an answer
