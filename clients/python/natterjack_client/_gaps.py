"""Filling the holes in a chat's seq order from REST history.

A hole (holding n, seeing n+2) is paged with ``after_seq=n`` and put through the same
ordering as live events. History is written a little after a send is acked, so a page
may not hold the missing events yet: a few retries, then the ``sync`` frame asks the
server to resend them instead. ``sync_required`` (the device fell too far behind) pages
the whole rest of the chat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ._errors import NatterjackClientError

if TYPE_CHECKING:
    from ._session import Session

PAGE = 200
TRIES = 5
FIRST_PAUSE_S = 0.1


class GapFiller:
    def __init__(self, session: Session):
        self.session = session
        self._busy: set[str] = set()  # chats with a filling task (it rechecks before it ends)

    def fill(self, chat_id: str) -> None:
        if chat_id not in self._busy:
            self._busy.add(chat_id)
            self.session.nursery.start_soon(self._fill, chat_id)

    def catch_up(self, chat_id: str) -> None:
        self.session.nursery.start_soon(self._catch_up, chat_id)

    async def _fill(self, chat_id: str) -> None:
        tracker, pause = self.session.tracker, FIRST_PAUSE_S
        try:
            for _ in range(TRIES):
                gap = tracker.missing(chat_id)
                if gap is None:
                    return
                await self._page(chat_id, gap.after_seq, gap.before_seq)
                if tracker.missing(chat_id) == gap:
                    await trio.sleep(pause)
                    pause *= 2
            if (gap := tracker.missing(chat_id)) is not None:
                await self.session.sync(chat_id, gap.after_seq)
        finally:
            self._busy.discard(chat_id)

    async def _catch_up(self, chat_id: str) -> None:
        await self._page(chat_id, self.session.tracker.held(chat_id) or 0, None)

    async def _page(self, chat_id: str, after_seq: int, before_seq: int | None) -> None:
        """Every event strictly between the bounds into the order (quietly: the caller retries)."""
        client = self.session.client
        while True:
            try:
                page = await client.history(chat_id, after_seq=after_seq, before_seq=before_seq,
                                            limit=PAGE)
            except NatterjackClientError:
                return
            if page.retained_from_seq is not None and after_seq < page.retained_from_seq - 1:
                await self.session.skip_to(chat_id, page.retained_from_seq - 1)
            for event in page.events:
                await self.session.accept(event)
            if not page.has_more or not page.events:
                return
            after_seq = page.events[-1].seq
