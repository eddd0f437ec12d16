"""Bus handlers for im.history.page, im.history.get and im.history.search.

No SQL or Redis here: ``storage`` reads MySQL, ``recent`` the Redis cache. Pages are
read cache first; replies splice stored JSON (``orjson.Fragment``) so contents and
metadata go back exactly as they were stored.
"""

from __future__ import annotations

from typing import Any

import orjson

from libs import metrics

from .domain import (
    Access,
    PageRequest,
    finish_page,
    parse_get_request,
    parse_page_request,
    require_member,
)
from .errors import EventNotFound
from .recent import RecentCache
from .search import parse_search_request, split_terms
from .state import item_json
from .storage import HistoryStorage, PageRead
from .window import cache_query, is_newest_page, page_from_cache

HITS = metrics.CACHE_LOOKUPS.labels(cache="history", result="hit")
MISSES = metrics.CACHE_LOOKUPS.labels(cache="history", result="miss")
FULLTEXT_DEFAULTS = (3, 84, frozenset[str]())


class HistoryHandlers:
    def __init__(self, storage: HistoryStorage, recent: RecentCache | None = None,
                 fulltext: tuple[int, int, frozenset[str]] = FULLTEXT_DEFAULTS):
        self.storage = storage
        self.recent = recent
        self.fulltext = fulltext

    async def page(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{chat_id, user_id, before_seq?, after_seq?, limit?} -> {chat_id, events, has_more}."""
        request = parse_page_request(payload)
        ver = None
        if self.recent is not None and self.recent.usable(request.chat_id):
            snapshot = await self.recent.read(request.chat_id, request.user_id,
                                              cache_query(request.plan))
            if snapshot is not None:
                ver = snapshot.ver
                if snapshot.member is False:  # cached as of a stored chat_updated event
                    require_member(Access.NOT_MEMBER, request.chat_id)
                if snapshot.member and snapshot.hi is not None:
                    served = page_from_cache(request.plan, snapshot.hi, snapshot.held)
                    if served is not None:
                        HITS.inc()
                        return _reply(request.chat_id, served[0], served[1])
        MISSES.inc()
        read = await self.storage.read_page(request.chat_id, request.user_id, request.plan)
        require_member(read.access, request.chat_id)
        page, has_more = finish_page(read.rows, request.plan)
        if ver is not None and self.recent is not None and is_newest_page(request.plan):
            member = (request.user_id, True, read.member_seq) if read.member_seq is not None else None
            await self.recent.refill(request.chat_id, ver, read.rows, member)
        reply = _reply(request.chat_id, [item_json(row) for row in page], has_more)
        if _below_retention(request, read, has_more):
            reply["retained_from_seq"] = read.min_seq
        return reply

    async def get(self, payload: dict[str, Any]) -> orjson.Fragment:
        """{chat_id, user_id, seq} or {message_id, user_id} -> that event's page item."""
        request = parse_get_request(payload)
        if request.message_id is not None:
            found = await self.storage.read_message(request.user_id, request.message_id)
            if found is None:
                raise EventNotFound("no such message", details={"message_id": request.message_id})
            chat_id, access, row = found
            require_member(access, chat_id)
            return orjson.Fragment(item_json(row))
        assert request.chat_id is not None and request.seq is not None
        access, stored = await self.storage.read_event(request.chat_id, request.user_id, request.seq)
        require_member(access, request.chat_id)
        if stored is None:
            raise EventNotFound("no event at this seq",
                                details={"chat_id": request.chat_id, "seq": request.seq})
        return orjson.Fragment(item_json(stored))

    async def search(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{chat_id, user_id, q, limit?, before_seq?} -> {chat_id, events (newest first), has_more}."""
        request = parse_search_request(payload)
        terms = split_terms(request.query, *self.fulltext)
        access, rows = await self.storage.search(request.chat_id, request.user_id, terms,
                                                 request.before, request.limit)
        require_member(access, request.chat_id)
        return _reply(request.chat_id, [item_json(row) for row in rows[: request.limit]],
                      len(rows) > request.limit)


def _reply(chat_id: str, items: list[bytes], has_more: bool) -> dict[str, Any]:
    return {"chat_id": chat_id, "events": [orjson.Fragment(item) for item in items],
            "has_more": has_more}


def _below_retention(request: PageRequest, read: PageRead, has_more: bool) -> bool:
    """Whether the page's range reaches below the lowest seq retention kept."""
    if read.min_seq <= 1:
        return False
    plan = request.plan
    lower = 1 if plan.after is None else plan.after + 1
    return lower < read.min_seq and (not plan.newest_first or not has_more)
