"""The scheduler's rest: until the next due row, capped; the alarm others bring forward."""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from services.delivery_retry.pause import Alarm, until_next_scan

NOW = 1_700_000_000_000


@settings(max_examples=200, deadline=None)
@given(due_in=st.one_of(st.none(), st.integers(-10**9, 10**9)),
       idle_s=st.floats(0.001, 3600, allow_nan=False))
def test_rest_lasts_until_the_next_due_row_never_longer_than_the_idle_scan(
        due_in: int | None, idle_s: float) -> None:
    rest = until_next_scan(None if due_in is None else NOW + due_in, NOW, idle_s)
    assert 0 <= rest <= idle_s
    if due_in is None:
        assert rest == idle_s
    elif due_in <= 0:
        assert rest == 0  # overdue: at once
    elif due_in / 1000 < idle_s:
        assert abs(rest - due_in / 1000) < 1e-9


async def woken_at(alarm: Alarm, deadline: float, earliest: float = 0.0) -> float:
    await alarm.sleep_until(deadline, earliest=earliest)
    return trio.current_time()


async def test_the_alarm_sleeps_until_its_deadline(autojump_clock: Any) -> None:
    assert await woken_at(Alarm(), 10.0) == 10.0


async def test_brought_forward_it_wakes_sooner_but_never_before_earliest(autojump_clock: Any) -> None:
    alarm = Alarm()
    woke: list[float] = []

    async def sleeper() -> None:
        woke.append(await woken_at(alarm, 10.0, earliest=2.0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await trio.sleep(1.0)
        alarm.bring_forward(20.0)  # later than planned: no change
        alarm.bring_forward(0.5)  # sooner than earliest: earliest
    assert woke == [2.0]


async def test_a_deadline_given_while_awake_counts_for_the_next_sleep(autojump_clock: Any) -> None:
    alarm = Alarm()
    alarm.bring_forward(3.0)  # a row committed while a scan was under way
    assert await woken_at(alarm, 10.0) == 3.0
    alarm.bring_forward(5.0)
    alarm.forget()  # a scan started: it reads that row's due time itself
    assert await woken_at(alarm, 10.0) == 10.0


async def test_ring_wakes_the_sleeper_and_every_later_sleep_returns_at_once(autojump_clock: Any) -> None:
    alarm = Alarm()
    woke: list[float] = []

    async def sleeper() -> None:
        woke.append(await woken_at(alarm, 100.0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await trio.sleep(1.0)
        alarm.ring()
    assert woke == [1.0]
    assert await woken_at(alarm, 100.0) == 1.0
