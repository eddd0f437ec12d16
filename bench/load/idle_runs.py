"""Scenario 2 on the relay and on the product: idle sockets on one gateway process, then
spread over several gateway processes of the same stack.

A process may open 20,000 files here (hard limit), so one server holds at most
``ONE_PROCESS_MAX`` sockets: the relay baseline is measured only up to that count, on a
fresh relay process for each count. The
product's tokens are issued once, for the larger of the two counts, ``DEVICES_PER_USER``
devices per user; the spread reuses the single-gateway run's devices on fresh gateway
processes (their RSS growth is not flattered by memory the first run left behind).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tools.stack import Stack

from . import idle
from .accounts import issue_tokens
from .fleet import progress

ONE_PROCESS_MAX = 19_000
DEVICES_PER_USER = 4


def let_close(sockets: int) -> None:
    """The servers see the last measurement's sockets go before the next one opens."""
    time.sleep(min(8.0, 1.0 + sockets / 5000))


def relay_idle(start: Callable[[], Any], count: int, spread: int, workers: int,
               seconds: float) -> dict[str, Any]:
    """A fresh relay (``start()``: .url, .process, .stop()) with ``count`` sockets, another
    with ``spread`` sockets when one process can hold them (the count the product spreads
    over several gateways)."""
    found: dict[str, Any] = {}
    for key, n in (("idle", count), ("idle_spread", spread)):
        if n == count and "idle" in found:
            found[key] = found["idle"]
        elif 0 < n <= ONE_PROCESS_MAX:
            relay = start()
            try:
                urls = [f"{relay.url}?token=idle{i}" for i in range(n)]
                found[key] = idle.measure("relay", {"relay": relay.url},
                                          {"relay": relay.process.pid}, urls, workers, seconds)
            finally:
                relay.stop()
    return found


def product_idle(stack: Stack, count: int, gateways: int, spread: int, workers: int,
                 seconds: float) -> dict[str, Any]:
    """``count`` sockets on the stack's gateway, then ``spread`` over ``gateways`` new ones."""
    wanted = max(count, spread)
    if not wanted:
        return {}
    progress(f"[product] idle: {wanted:,} tokens, {DEVICES_PER_USER} devices per user")
    tokens, took = issue_tokens(stack.api, wanted, DEVICES_PER_USER)
    found: dict[str, Any] = {"idle_tokens": {"tokens": wanted, "seconds": took,
                                             "per_s": wanted / took,
                                             "devices_per_user": DEVICES_PER_USER}}
    if count:
        one = {"gateway": stack.ws_url}
        found["idle"] = idle.measure("product", one, {"gateway": stack.processes["gateway"].pid},
                                     idle.spread(one, tokens[:count]), workers, seconds)
        let_close(count)
    if spread:
        servers = {f"idle-gw{g + 1}": stack.start_gateway(f"idle-gw{g + 1}")[1]
                   for g in range(gateways)}
        pids = {name: stack.processes[name].pid for name in servers}
        found["idle_spread"] = {**idle.measure(f"product, {gateways} gateways", servers, pids,
                                               idle.spread(servers, tokens[:spread]), workers,
                                               seconds),
                                "gateways": gateways}
    return found
