"""The RPC handlers over a fake storage: error codes and reply shapes."""

from __future__ import annotations

from typing import cast

import orjson
import pytest

from libs.errors import NatterjackError
from services.history.domain import Access
from services.history.handlers import HistoryHandlers
from services.history.storage import HistoryStorage, PageRead, StoredBody


def body(seq: int) -> str:
    return orjson.dumps({"event": "message", "chat_id": "c1", "seq": seq, "ts": seq,
                         "content": {"z": seq, "a": None}}).decode()


class FakeStorage:
    def __init__(self, access: Access = Access.MEMBER, seqs: range = range(1, 11)):
        self.access = access
        self.seqs = list(seqs)

    async def read_page(self, chat_id, user_id, plan):
        if self.access is not Access.MEMBER:
            return PageRead(self.access)
        ordered = sorted(self.seqs, reverse=plan.newest_first)
        rows = [StoredBody(s, body(s)) for s in ordered if plan.admits(s)][: plan.fetch_limit]
        return PageRead(self.access, rows)

    async def read_event(self, chat_id, user_id, seq):
        found = seq in self.seqs and self.access is Access.MEMBER
        return self.access, StoredBody(seq, body(seq)) if found else None

    async def read_message(self, user_id, message_id):
        return ("c1", self.access, StoredBody(3, body(3))) if message_id == "m3" else None


def handlers_over(storage: FakeStorage) -> HistoryHandlers:
    return HistoryHandlers(cast(HistoryStorage, storage))


async def answer(handler, payload):
    return orjson.loads(orjson.dumps(await handler(payload)))


async def test_page_reply_shape() -> None:
    handlers = handlers_over(FakeStorage())
    reply = await answer(handlers.page, {"chat_id": "c1", "user_id": "u1", "limit": 3})
    assert reply["chat_id"] == "c1" and reply["has_more"] is True
    assert [e["seq"] for e in reply["events"]] == [8, 9, 10]
    assert list(reply["events"][0]) == ["type", "chat_id", "seq", "ts", "content", "state"]
    assert reply["events"][0]["state"] == "active"
    assert list(reply["events"][0]["content"]) == ["z", "a"]


@pytest.mark.parametrize(("access", "code"), [(Access.NOT_MEMBER, 4003), (Access.UNKNOWN_CHAT, 4001)])
async def test_page_and_get_check_membership(access: Access, code: int) -> None:
    handlers = handlers_over(FakeStorage(access))
    for handler, payload in ((handlers.page, {"chat_id": "c1", "user_id": "u9"}),
                             (handlers.get, {"chat_id": "c1", "user_id": "u9", "seq": 1}),
                             (handlers.get, {"message_id": "m3", "user_id": "u9"})):
        with pytest.raises(NatterjackError) as caught:
            await handler(payload)
        assert caught.value.code == code


async def test_get_one_event_or_4004() -> None:
    handlers = handlers_over(FakeStorage())
    assert (await answer(handlers.get, {"chat_id": "c1", "user_id": "u1", "seq": 4}))["seq"] == 4
    assert (await answer(handlers.get, {"message_id": "m3", "user_id": "u1"}))["seq"] == 3
    for payload in ({"chat_id": "c1", "user_id": "u1", "seq": 99}, {"message_id": "m9", "user_id": "u1"}):
        with pytest.raises(NatterjackError) as caught:
            await handlers.get(payload)
        assert caught.value.code == 4004


async def test_bad_requests_are_4000() -> None:
    handlers = handlers_over(FakeStorage())
    for payload in ({"chat_id": "c1", "user_id": "u1", "limit": 201},
                    {"chat_id": "c1", "user_id": "u1", "before_seq": "x"},
                    {"user_id": "u1"}):
        with pytest.raises(NatterjackError) as caught:
            await handlers.page(payload)
        assert caught.value.code == 4000
