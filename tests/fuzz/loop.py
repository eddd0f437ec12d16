"""A trio loop in a background thread, so synchronous hypothesis examples can share
connections (a WebSocket, an HTTP client, a bus connection) that live across examples."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class Loop:
    def __init__(self, name: str = "fuzz-loop"):
        self.thread = threading.Thread(target=self._thread, name=name, daemon=True)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.token: trio.lowlevel.TrioToken
        self._stop: trio.Event

    def __enter__(self) -> Loop:
        self.thread.start()
        if not self.ready.wait(30) or self.error is not None:
            raise RuntimeError("the fuzz loop did not start") from self.error
        return self

    def __exit__(self, *exc: Any) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self.token)
        self.thread.join(10)

    def _thread(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # noqa: BLE001 - reported by __enter__ / run
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._stop = trio.Event()
        self.token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` on the loop, from the test's thread."""
        return trio.from_thread.run(fn, *args, trio_token=self.token)
