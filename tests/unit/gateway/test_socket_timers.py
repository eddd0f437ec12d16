"""SocketTimers: one task pings every socket and ends it at token expiry (4409 / 4402)."""

from __future__ import annotations

import gc
import time

import pytest
import trio

from libs.tokens import Claims
from services.gateway.connection import CLOSE_KEEPALIVE_TIMEOUT, CLOSE_TOKEN_EXPIRED, Connection
from services.gateway.timers import SocketTimers

pytestmark = pytest.mark.timeout(10)


class Peer:
    def __init__(self, answers: bool):
        self.answers = answers
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1
        if not self.answers:
            await trio.sleep_forever()


def socket(peer: Peer, expires_in: float = 3600) -> Connection:
    claims = Claims("u1", "d1", "s1", int(time.time() + expires_in))
    return Connection(peer, claims, 8)  # type: ignore[arg-type]


async def watched(timers: SocketTimers, conn: Connection, nursery: trio.Nursery) -> None:
    """Watch ``conn``, with a nursery of its own as in the gateway (closing cancels it)."""
    async def run(task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as own:
            conn.nursery = own
            timers.watch(conn)
            task_status.started()
            await trio.sleep_forever()
    await nursery.start(run)


async def test_a_peer_that_never_pongs_is_closed_with_4409() -> None:
    timers = SocketTimers(ping_interval_s=0.05, ping_timeout_s=0.1)
    conn = socket(Peer(answers=False))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        await watched(timers, conn, nursery)
        with trio.fail_after(2):
            await conn.closed.wait()
        nursery.cancel_scope.cancel()
    assert conn.close_code == CLOSE_KEEPALIVE_TIMEOUT


async def _answering_peer_after(seconds: float, interval: float, timeout: float) -> tuple[Connection, Peer]:
    """A socket whose peer answers every ping, watched for ``seconds``."""
    timers = SocketTimers(ping_interval_s=interval, ping_timeout_s=timeout)
    peer = Peer(answers=True)
    conn = socket(peer)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        await watched(timers, conn, nursery)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return conn, peer


async def test_a_live_peer_is_pinged_every_interval_and_kept() -> None:
    conn, peer = await _answering_peer_after(0.5, interval=0.05, timeout=0.1)
    assert not conn.closed.is_set()
    assert 4 <= peer.pings <= 11


async def test_an_expired_token_closes_with_4402_unless_renewed() -> None:
    timers = SocketTimers(ping_interval_s=30, ping_timeout_s=10)
    ending, renewed = socket(Peer(True), expires_in=1), socket(Peer(True), expires_in=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        await watched(timers, ending, nursery)
        await watched(timers, renewed, nursery)
        renewed.claims = Claims("u1", "d1", "s1", int(time.time() + 3600))  # an auth frame
        with trio.fail_after(3):
            await ending.closed.wait()
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert ending.close_code == CLOSE_TOKEN_EXPIRED
    assert not renewed.closed.is_set()
    assert len(timers) == 1  # the renewed socket's next deadline


async def test_a_closed_socket_is_forgotten_at_its_next_deadline() -> None:
    timers = SocketTimers(ping_interval_s=0.05, ping_timeout_s=0.1)
    peer = Peer(answers=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        conn = socket(peer)
        await watched(timers, conn, nursery)
        conn.close(1000, "client closed")
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert peer.pings == 0 and len(timers) == 0
    del conn
    gc.collect()


class Dark(Peer):
    """Answers pings until ``dark_at`` (trio time), then never again."""

    def __init__(self, dark_at: float):
        super().__init__(answers=True)
        self.dark_at = dark_at

    async def ping(self) -> None:
        self.pings += 1
        if trio.current_time() >= self.dark_at:
            await trio.sleep_forever()


async def test_a_peer_that_goes_dark_is_closed_within_interval_plus_timeout(autojump_clock) -> None:
    timers = SocketTimers(ping_interval_s=20, ping_timeout_s=10)
    peers = [Dark(dark_at=100 + n) for n in range(50)]  # pinged at different phases
    conns = [socket(peer) for peer in peers]
    closed_after: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        for conn in conns:
            await watched(timers, conn, nursery)
            await trio.sleep(0.37)  # spread the sockets over the interval
        for conn, peer in zip(conns, peers, strict=True):
            await conn.closed.wait()
            closed_after.append(trio.current_time() - peer.dark_at)
            assert conn.close_code == CLOSE_KEEPALIVE_TIMEOUT
        nursery.cancel_scope.cancel()
    assert max(closed_after) <= 20 + 10 + 0.1, max(closed_after)
    assert all(peer.pings >= 5 for peer in peers)  # pinged every interval while answering


async def test_a_pong_in_time_keeps_the_socket_with_a_timeout_longer_than_the_interval(
        autojump_clock) -> None:
    conn, peer = await _answering_peer_after(100, interval=5, timeout=12)
    assert not conn.closed.is_set()
    assert 18 <= peer.pings <= 20

