"""A service under test in a background thread with its own ``trio.run``.

Hypothesis tests are synchronous, so each property module runs its service once per module
in a thread of its own and calls into it with ``trio.from_thread.run`` through the thread's
trio token.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from libs.lifecycle import Runtime

T = TypeVar("T")
Also = Callable[[Runtime, trio.Nursery], Awaitable[None]]


class ServiceThread:
    """``main(config, handle_signals=False)`` in a daemon thread; ``run`` executes a coroutine
    function there. ``also(runtime, nursery)``, when given, starts extra tasks (stand-ins,
    collectors, clients) once the service serves; they are cancelled before the service is
    asked to stop."""

    def __init__(self, main: Callable[..., Awaitable[None]], config: Any, *,
                 also: Also | None = None, name: str = "service-under-test"):
        self._service_main, self.config, self._also = main, config, also
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._thread, name=name, daemon=True)
        self.runtime: Runtime
        self.token: trio.lowlevel.TrioToken
        self._stop: trio.Event

    def start(self, timeout: float = 60) -> None:
        """Start the thread; returns once the service serves, or raises the thread's error."""
        self.thread.start()
        self.ready.wait(timeout)
        if self.error is not None:
            raise self.error
        if not self.ready.is_set():
            raise RuntimeError(f"{self.thread.name} did not start within {timeout}s")

    def _thread(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread by start()
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self.runtime = await nursery.start(functools.partial(
                self._service_main, self.config, handle_signals=False))
            async with trio.open_nursery() as extras:
                if self._also is not None:
                    await self._also(self.runtime, extras)
                self.token = trio.lowlevel.current_trio_token()
                self.ready.set()
                await self._stop.wait()
                extras.cancel_scope.cancel()
            self.runtime.stopping.set()

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def stop(self, timeout: float = 30) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self.token)
        self.thread.join(timeout)
