"""Answering pages from the recent-event cache: exactly MySQL's answer, or a miss."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.history.domain import finish_page, plan_page
from services.history.window import cache_query, is_newest_page, page_from_cache


def held_for(plan, hi: int, present: set[int]) -> list[tuple[int, bytes]]:
    """What the Redis read returns: held seqs within the query, in its order, up to count."""
    query = cache_query(plan)
    upper = hi if query.upper is None else min(hi, query.upper)
    seqs = sorted((s for s in present if query.lower <= s <= upper), reverse=query.descending)
    return [(s, str(s).encode()) for s in seqs[: query.count]]


def mysql_answer(plan, stored: set[int]) -> tuple[list[bytes], bool]:
    rows = sorted((s for s in stored if plan.admits(s)), reverse=plan.newest_first)[: plan.fetch_limit]
    page, more = finish_page(rows, plan)
    return [str(s).encode() for s in page], more


@settings(max_examples=300)
@given(hi=st.integers(0, 60), low=st.integers(1, 61), holes=st.sets(st.integers(1, 60), max_size=5),
       before=st.none() | st.integers(0, 70), after=st.none() | st.integers(0, 70), limit=st.integers(1, 30))
def test_a_served_page_equals_the_mysql_page(hi, low, holes, before, after, limit) -> None:
    stored = set(range(1, hi + 1))  # dense, as the contract says
    cached = {s for s in stored if s >= low} - holes
    plan = plan_page(before, after, limit)
    served = page_from_cache(plan, hi, held_for(plan, hi, cached))
    if served is not None:
        assert served == mysql_answer(plan, stored)


def test_a_fully_cached_chat_serves_every_page() -> None:
    stored = set(range(1, 41))
    for before, after, limit in [(None, None, 10), (None, None, 50), (5, None, 3), (None, 38, 5),
                                 (None, 40, 5), (20, 10, 4), (0, None, 5), (None, 0, 1)]:
        plan = plan_page(before, after, limit)
        assert page_from_cache(plan, 40, held_for(plan, 40, stored)) == mysql_answer(plan, stored)


def test_a_hole_or_a_window_too_short_is_a_miss() -> None:
    plan = plan_page(None, None, 10)
    assert page_from_cache(plan, 40, held_for(plan, 40, set(range(1, 41)) - {35})) is None
    assert page_from_cache(plan, 40, held_for(plan, 40, set(range(35, 41)))) is None
    assert page_from_cache(plan, 40, held_for(plan, 40, set(range(30, 41)))) is not None


def test_only_unbounded_newest_pages_refill() -> None:
    assert is_newest_page(plan_page(None, None, 5))
    assert not is_newest_page(plan_page(10, None, 5)) and not is_newest_page(plan_page(None, 3, 5))
