"""Keepalive pings and token expiry of every socket, from one task.

Every socket is pinged each interval and its pong awaited for the timeout, both the same
for all sockets: so the sockets wait for their next ping in one FIFO, and those awaiting
a pong in another, each in the order of its deadlines, with nothing allocated per ping to
keep the order (a heap entry per ping lived the whole interval and, at 20,000 sockets,
fed the garbage collector's oldest generation). The deadlines live on the connection.
Token expiry, which rarely changes, keeps a heap. Entries name sockets weakly: a socket
that closed is dropped when its entry comes up and never kept alive by the queues.

A ping is one short task awaiting trio-websocket's ``ping()`` (its only public way to see
the pong); the pong's deadline is watched here, so that task holds no cancel scope.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import time
import weakref
from collections import deque

import trio
from trio_websocket import ConnectionClosed

from libs import log

from .connection import CLOSE_KEEPALIVE_TIMEOUT, CLOSE_TOKEN_EXPIRED, Connection

logger = log.get("gateway.timers")
BATCH_S = 0.02  # deadlines this close together are served by one wake-up
Ref = weakref.ref[Connection]


class SocketTimers:
    def __init__(self, ping_interval_s: float, ping_timeout_s: float):
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self._pings: deque[Ref] = deque()  # by Connection.ping_due
        self._pongs: deque[Ref] = deque()  # by Connection.pong_due (one entry per socket at most)
        self._expiries: list[tuple[float, int, Ref]] = []  # (trio time, order, socket)
        self._order = itertools.count()
        self._changed = trio.Event()

    def __len__(self) -> int:
        """Sockets watched and still open."""
        return sum(1 for ref in self._pings if (conn := ref()) is not None and not conn.closed.is_set())

    def watch(self, conn: Connection) -> None:
        """From now on ping ``conn`` every interval and close it when its token expires."""
        ref = weakref.ref(conn)
        conn.ping_due = trio.current_time() + self.ping_interval_s
        if not self._pings:
            self._changed.set()
        self._pings.append(ref)
        self._push_expiry(conn, ref)

    def _push_expiry(self, conn: Connection, ref: Ref) -> None:
        due = trio.current_time() + max(0.0, conn.claims.expires_at - time.time())
        heapq.heappush(self._expiries, (due, next(self._order), ref))
        if self._expiries[0][2] is ref:
            self._changed.set()

    async def run(self) -> None:
        while True:
            wait = self.next_due() - trio.current_time()
            if wait > 0:
                with trio.move_on_after(max(wait, BATCH_S)):
                    await self._changed.wait()
                if self._changed.is_set():
                    self._changed = trio.Event()
            self.fire_due()

    def next_due(self) -> float:
        due = self._expiries[0][0] if self._expiries else math.inf
        if (conn := _front(self._pings)) is not None:
            due = min(due, conn.ping_due)
        if (conn := self._awaiting_pong()) is not None:
            due = min(due, conn.pong_due)
        return due

    def _awaiting_pong(self) -> Connection | None:
        """The socket whose pong is due first, dropping entries answered or closed before it."""
        while (conn := _front(self._pongs)) is not None and conn.pong_due == math.inf:
            self._pongs.popleft()  # answered
            conn.pong_queued = False
        return conn

    def fire_due(self) -> None:
        now = trio.current_time()
        self._fire_pongs(now)
        self._fire_expiries(now)
        self._fire_pings(now)

    def _fire_pongs(self, now: float) -> None:
        while (conn := self._awaiting_pong()) is not None and conn.pong_due <= now:
            self._pongs.popleft()
            conn.pong_queued = False
            logger.info("gateway.keepalive_timeout", user_id=conn.user_id, device_id=conn.device_id)
            conn.close(CLOSE_KEEPALIVE_TIMEOUT, "keepalive timeout: reconnect")

    def _fire_expiries(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, _, ref = heapq.heappop(expiries)
            conn = ref()
            if conn is None or conn.closed.is_set():
                continue
            if conn.claims.expires_at <= time.time():  # not renewed by an auth frame
                conn.close(CLOSE_TOKEN_EXPIRED, "access token expired: refresh, then reconnect")
            else:
                self._push_expiry(conn, ref)  # renewed: its new expiry

    def _fire_pings(self, now: float) -> None:
        pings, next_due = self._pings, now + self.ping_interval_s
        while (conn := _front(pings)) is not None and conn.ping_due <= now:
            ref = pings.popleft()
            conn.ping_due = next_due
            pings.append(ref)
            # A pong still awaited (a timeout longer than the interval): no second ping.
            if not conn.pong_queued and conn.nursery is not None:
                conn.pong_due, conn.pong_queued = now + self.ping_timeout_s, True
                self._pongs.append(ref)
                with contextlib.suppress(RuntimeError):  # the socket's tasks already ended
                    conn.nursery.start_soon(_ping, conn)


def _front(queue: deque[Ref]) -> Connection | None:
    """The first open socket of ``queue``, dropping the closed ones before it."""
    while queue:
        conn = queue[0]()
        if conn is not None and not conn.closed.is_set():
            return conn
        queue.popleft()
    return None


async def _ping(conn: Connection) -> None:
    """Ping; the pong marks the socket answered. No pong by ``pong_due`` closes it with 4409
    (SocketTimers): a peer that vanished without a FIN (a phone losing its network) would
    otherwise hold the socket and look online forever while its events go nowhere. It
    never acked them, so they come with the catch-up when the device reconnects."""
    try:
        await conn.ws.ping()
    except ConnectionClosed:
        conn.close(1006, "socket closed")
        return
    conn.pong_due = math.inf
