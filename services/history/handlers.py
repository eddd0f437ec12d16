"""Bus handlers for im.history.page and im.history.get (no SQL here: storage does I/O).

Replies splice the stored event text (``orjson.Fragment``) so contents and metadata go
back exactly as they were stored.
"""

from __future__ import annotations

from typing import Any

import orjson

from .domain import (
    finish_page,
    page_item_json,
    parse_get_request,
    parse_page_request,
    require_member,
)
from .errors import EventNotFound
from .storage import HistoryStorage


class HistoryHandlers:
    def __init__(self, storage: HistoryStorage):
        self.storage = storage

    async def page(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{chat_id, user_id, before_seq?, after_seq?, limit?} -> {chat_id, events, has_more}."""
        request = parse_page_request(payload)
        access, rows = await self.storage.read_page(request.chat_id, request.user_id, request.plan)
        require_member(access, request.chat_id)
        page, has_more = finish_page(rows, request.plan)
        return {"chat_id": request.chat_id,
                "events": [orjson.Fragment(page_item_json(row.body)) for row in page],
                "has_more": has_more}

    async def get(self, payload: dict[str, Any]) -> orjson.Fragment:
        """{chat_id, user_id, seq} or {message_id, user_id} -> that event's page item."""
        request = parse_get_request(payload)
        if request.message_id is not None:
            found = await self.storage.read_message(request.user_id, request.message_id)
            if found is None:
                raise EventNotFound("no such message", details={"message_id": request.message_id})
            chat_id, access, body = found
            require_member(access, chat_id)
            return orjson.Fragment(page_item_json(body))
        assert request.chat_id is not None and request.seq is not None
        access, stored = await self.storage.read_event(request.chat_id, request.user_id, request.seq)
        require_member(access, request.chat_id)
        if stored is None:
            raise EventNotFound("no event at this seq",
                                details={"chat_id": request.chat_id, "seq": request.seq})
        return orjson.Fragment(page_item_json(stored))
