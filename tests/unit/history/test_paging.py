"""History paging: the plan + finish pair against a plain model of the contract's rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.errors import MALFORMED
from services.history.domain import DEFAULT_LIMIT, PagePlan, finish_page, plan_page
from services.history.errors import BadRequest


def model_page(seqs: set[int], before: int | None, after: int | None,
               limit: int) -> tuple[list[int], bool]:
    """The contract, read literally: ascending, exclusive bounds, newest unless after_seq."""
    inside = sorted(s for s in seqs if (after is None or s > after) and (before is None or s < before))
    page = inside[-limit:] if after is None else inside[:limit]
    return page, len(inside) > limit


def fetch_like_sql(seqs: set[int], plan: PagePlan) -> list[int]:
    """What storage's SELECT returns: bounded range, plan order, fetch_limit rows."""
    ordered = sorted(seqs, reverse=plan.newest_first)
    return [s for s in ordered if plan.admits(s)][: plan.fetch_limit]


def page_of(seqs: set[int], before: int | None, after: int | None,
            limit: int | None) -> tuple[list[int], bool]:
    plan = plan_page(before, after, limit)
    return finish_page(fetch_like_sql(seqs, plan), plan)


bounds = st.none() | st.integers(min_value=0, max_value=260)
limits = st.integers(min_value=1, max_value=12) | st.integers(min_value=1, max_value=200)
stored = (st.sets(st.integers(min_value=1, max_value=250), max_size=120)
          | st.integers(min_value=0, max_value=250).map(lambda n: set(range(1, n + 1))))


@settings(max_examples=300, deadline=None)
@given(seqs=stored, before=bounds, after=bounds, limit=limits)
def test_page_matches_model(seqs: set[int], before: int | None, after: int | None,
                            limit: int) -> None:
    assert page_of(seqs, before, after, limit) == model_page(seqs, before, after, limit)


@settings(max_examples=100, deadline=None)
@given(seqs=stored, before=bounds, after=bounds, limit=limits)
def test_page_is_ascending_bounded_and_never_longer_than_limit(
        seqs: set[int], before: int | None, after: int | None, limit: int) -> None:
    page, _ = page_of(seqs, before, after, limit)
    assert page == sorted(page) and len(page) <= limit
    assert all((after is None or s > after) and (before is None or s < before) for s in page)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(min_value=0, max_value=250), limit=limits)
def test_paging_back_with_before_seq_visits_every_event_once(n: int, limit: int) -> None:
    seqs, before, more = set(range(1, n + 1)), None, True
    seen: list[int] = []
    while more:
        page, more = page_of(seqs, before, None, limit)
        seen = page + seen
        before = page[0] if page else 0
    assert seen == sorted(seqs)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(min_value=0, max_value=250), limit=limits)
def test_catching_up_with_after_seq_visits_every_event_once(n: int, limit: int) -> None:
    seqs, after, more = set(range(1, n + 1)), 0, True
    seen: list[int] = []
    while more:
        page, more = page_of(seqs, None, after, limit)
        seen += page
        after = page[-1] if page else after
    assert seen == sorted(seqs)


HUNDRED = set(range(1, 101))


@pytest.mark.parametrize(("before", "after", "limit", "page", "more"), [
    (None, None, 10, list(range(91, 101)), True),        # newest limit
    (None, None, None, list(range(51, 101)), True),      # limit defaults to 50
    (None, None, 200, list(range(1, 101)), False),
    (50, None, 10, list(range(40, 50)), True),           # just below before_seq
    (5, None, 10, [1, 2, 3, 4], False),
    (1, None, 10, [], False),
    (0, None, 10, [], False),
    (None, 90, 5, [91, 92, 93, 94, 95], True),           # just above after_seq, oldest first
    (None, 95, 10, [96, 97, 98, 99, 100], False),
    (None, 100, 10, [], False),
    (None, 0, 3, [1, 2, 3], True),
    (20, 10, 5, [11, 12, 13, 14, 15], True),             # strictly between, oldest first
    (20, 10, 9, list(range(11, 20)), False),
    (20, 10, 50, list(range(11, 20)), False),
    (11, 10, 5, [], False),
    (10, 20, 5, [], False),
])
def test_contract_examples(before, after, limit, page, more) -> None:
    assert page_of(HUNDRED, before, after, limit) == (page, more)


def test_gaps_in_stored_seqs_do_not_confuse_has_more() -> None:
    assert page_of({1, 2, 7, 9}, 9, None, 2) == ([2, 7], True)
    assert page_of({1, 2, 7, 9}, None, 2, 2) == ([7, 9], False)


@pytest.mark.parametrize(("before", "after", "limit"), [
    (None, None, 0), (None, None, 201), (None, None, -1), (None, None, 1.5),
    (None, None, "10"), (None, None, True), (-1, None, 10), (None, -1, 10),
    ("5", None, 10), (None, "5", 10), (5.0, None, 10), (None, False, 10), (2**63, None, 10),
])
def test_bad_bounds_or_limit_are_malformed(before, after, limit) -> None:
    with pytest.raises(BadRequest) as caught:
        plan_page(before, after, limit)
    assert caught.value.code == MALFORMED


def test_plan_fields() -> None:
    assert plan_page(None, None, None) == PagePlan(None, None, DEFAULT_LIMIT, newest_first=True)
    assert plan_page(9, None, 3) == PagePlan(None, 9, 3, newest_first=True)
    assert plan_page(9, 2, 3) == PagePlan(2, 9, 3, newest_first=False)
    assert plan_page(None, 2, 200).fetch_limit == 201
