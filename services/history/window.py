"""Whether a page can be answered from the recent-event cache, and the page it gives.

No I/O here. The cache holds, per chat, some of the events in a window below ``hi``, the
newest seq stored in MySQL; every event it holds is the stored event's current page item.
A page is served from the cache only when every seq it needs is held: the page's own seqs
plus the next one in the reading direction (that one says whether there is more). Any seq
not held — never cached, trimmed, or not stored yet — sends the request to MySQL, which
gives the same answer the slow way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .domain import PagePlan

Held = Sequence[tuple[int, bytes]]  # (seq, page item JSON), in the order Redis returned them


@dataclass(frozen=True)
class CacheQuery:
    """The score range to read: newest first (descending from ``upper``) or oldest first."""

    lower: int
    upper: int | None  # None: no upper bound (+inf)
    descending: bool
    count: int


def cache_query(plan: PagePlan) -> CacheQuery:
    upper = None if plan.before is None else plan.before - 1
    if plan.newest_first:
        return CacheQuery(1, upper, True, plan.fetch_limit)
    assert plan.after is not None
    return CacheQuery(plan.after + 1, upper, False, plan.fetch_limit)


def _consecutive(held: Held, first: int, count: int, step: int) -> bool:
    if len(held) < count:
        return False
    return all(held[i][0] == first + i * step for i in range(count))


def page_from_cache(plan: PagePlan, hi: int, held: Held) -> tuple[list[bytes], bool] | None:
    """(items in ascending seq, has_more) when ``held`` answers the page; None on a miss."""
    upper = hi if plan.before is None else min(hi, plan.before - 1)
    if plan.newest_first:
        if upper < 1:
            return [], False
        lowest = max(upper - plan.limit, 1)
        count = upper - lowest + 1
        if not _consecutive(held, upper, count, -1):
            return None
        page = [item for _, item in held[: min(plan.limit, count)]]
        page.reverse()
        return page, count > plan.limit
    assert plan.after is not None
    start = plan.after + 1
    if start > upper:
        return [], False
    count = min(start + plan.limit, upper) - start + 1
    if not _consecutive(held, start, count, 1):
        return None
    return [item for _, item in held[: min(plan.limit, count)]], count > plan.limit


def is_newest_page(plan: PagePlan) -> bool:
    """Pages read down from the top: their MySQL rows may refill the cache."""
    return plan.newest_first and plan.before is None

