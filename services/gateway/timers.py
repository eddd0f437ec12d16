"""Keepalive pings and token expiry of every socket, from one task.

A task per socket sleeping until its next ping or its token's expiry is most of what an
idle socket costs; here each socket has one entry in a heap of deadlines instead (the
earlier of its next ping and its token's expiry), and a task exists only while a ping
waits for its pong. Entries name sockets weakly: a socket that closed is forgotten at its
next deadline and never kept alive by the heap.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import time
import weakref

import trio
from trio_websocket import ConnectionClosed

from libs import log

from .connection import CLOSE_KEEPALIVE_TIMEOUT, CLOSE_TOKEN_EXPIRED, Connection

logger = log.get("gateway.timers")


class SocketTimers:
    def __init__(self, ping_interval_s: float, ping_timeout_s: float):
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self._heap: list[tuple[float, int, weakref.ref[Connection]]] = []
        self._order = itertools.count()
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def watch(self, conn: Connection) -> None:
        """From now on ping ``conn`` every interval and close it when its token expires."""
        conn.next_ping = trio.current_time() + self.ping_interval_s
        self._schedule(conn)

    def _schedule(self, conn: Connection) -> None:
        now = trio.current_time()
        expiry = now + max(0.0, conn.claims.expires_at - time.time())
        due = min(conn.next_ping, expiry)
        heapq.heappush(self._heap, (due, next(self._order), weakref.ref(conn)))
        if self._heap[0][0] == due:
            self._changed.set()

    async def run(self) -> None:
        while True:
            self._changed = trio.Event()
            wait = self._heap[0][0] - trio.current_time() if self._heap else math.inf
            with trio.move_on_after(max(0.0, wait)):
                await self._changed.wait()
            self.fire_due()

    def fire_due(self) -> None:
        now = trio.current_time()
        while self._heap and self._heap[0][0] <= now:
            _, _, ref = heapq.heappop(self._heap)
            conn = ref()
            if conn is not None and not conn.closed.is_set():
                self._due(conn, now)

    def _due(self, conn: Connection, now: float) -> None:
        if conn.claims.expires_at <= time.time():  # not renewed by an auth frame
            conn.close(CLOSE_TOKEN_EXPIRED, "access token expired: refresh, then reconnect")
        elif conn.next_ping <= now and conn.nursery is not None:
            conn.next_ping = math.inf  # no ping is due while this one waits for its pong
            with contextlib.suppress(RuntimeError):  # the socket's tasks already ended
                conn.nursery.start_soon(self._ping, conn)
        else:
            self._schedule(conn)  # the token was renewed: its new expiry or the next ping

    async def _ping(self, conn: Connection) -> None:
        """Close with 4409 when no pong comes in time: a peer that vanished without a FIN
        (a phone losing its network) would otherwise hold the socket and look online
        forever while its events go nowhere. It never acked them, so they come with the
        catch-up when the device reconnects. The token's expiry cuts the wait short."""
        try:
            with trio.fail_after(self.ping_timeout_s):
                with trio.move_on_after(max(0.0, conn.claims.expires_at - time.time())):
                    await conn.ws.ping()
        except trio.TooSlowError:
            logger.info("gateway.keepalive_timeout", user_id=conn.user_id, device_id=conn.device_id)
            conn.close(CLOSE_KEEPALIVE_TIMEOUT, "keepalive timeout: reconnect")
            return
        except ConnectionClosed:
            conn.close(1006, "socket closed")
            return
        conn.next_ping = trio.current_time() + self.ping_interval_s
        self._schedule(conn)
