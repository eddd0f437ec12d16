"""Accounts, chats and pairs for the load clients, on the product or on the relay."""

from __future__ import annotations

import base64
import itertools

import httpx
import orjson
import trio

from tests.checker import Device

from .accounts import issue_tokens
from .clients import Pair, Peer

Account = tuple[str, Device]  # (access token, device)


def device_of(token: str) -> Device:
    """The user and device a token names (its claims, read without verifying)."""
    payload = token.split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return Device(str(claims["sub"]), str(claims["did"]))


def accounts(api: str, n: int) -> list[Account]:
    """``n`` registered users, each logged in on one device."""
    return [(token, device_of(token)) for token in issue_tokens(api, n)[0]]


async def direct_chats(api: str, pairs: list[tuple[Account, Account]]) -> list[str]:
    """One direct chat per (sender, recipient), created by the sender."""
    chats = [""] * len(pairs)
    limiter = trio.Semaphore(16)
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        async def one(i: int) -> None:
            (token, _), (_, other) = pairs[i]
            async with limiter:
                answer = await http.post("/api/v1/chats", headers={"Authorization": f"Bearer {token}"},
                                         json={"type": "direct", "members": [other.user_id]})
            assert answer.status_code in (200, 201), answer.text
            chats[i] = str(answer.json()["chat_id"])
        async with trio.open_nursery() as nursery:
            for i in range(len(pairs)):
                nursery.start_soon(one, i)
    return chats


def product_pairs(api: str, ws_urls: list[str], n: int) -> list[Pair]:
    """``n`` pairs in direct chats; pair i's sender uses ws_urls[i % k] and its recipient
    the next URL, so with two gateways every message crosses from one to the other."""
    people = accounts(api, 2 * n)
    couples = list(zip(people[:n], people[n:], strict=True))
    chats = trio.run(direct_chats, api, couples)
    urls = itertools.cycle(ws_urls)
    return [Pair(Peer(a[0], a[1], next(urls)), Peer(b[0], b[1], ws_urls[(i + 1) % len(ws_urls)]),
                 chat) for i, ((a, b), chat) in enumerate(zip(couples, chats, strict=True))]


def relay_pairs(ws_url: str, n: int) -> list[Pair]:
    """``n`` pairs on the relay: names instead of accounts, the recipient's name as chat."""
    def peer(name: str) -> Peer:
        return Peer(name, Device(name, name), ws_url)
    return [Pair(peer(f"s{i}"), peer(f"r{i}"), f"r{i}") for i in range(n)]
