"""A TCP proxy that tests can switch off: the stand-in for a database or cache going away.

It runs its own trio loop in a daemon thread, so synchronous tests, hypothesis state
machines and trio tests drive it alike. Three states:

- ``up``: bytes flow both ways (the default).
- ``down``: every open connection is cut and new ones are closed as soon as they are
  accepted — what a client sees when the server process dies or restarts.
- ``hang``: connections stay open but nothing flows, new ones are accepted and ignored —
  a partition or a stuck server; clients find out only through their own timeouts.

Switching back to ``up`` lets new connections through; connections cut while down stay cut
(as after a real restart), connections held while hanging resume.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import trio

UP, DOWN, HANG = "up", "down", "hang"


@dataclass(eq=False)  # held in a set by identity
class _Link:
    client: trio.SocketStream
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class Proxy:
    """``Proxy(port).start()`` listens on 127.0.0.1:<free port> in front of 127.0.0.1:port."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.state = UP
        self._links: set[_Link] = set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"proxy-{upstream_port}", daemon=True)
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._resume: trio.Event | None = None
        self.accepted = 0

    # ---- what tests call -----------------------------------------------------------------
    def start(self) -> Proxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def up(self) -> None:
        self._set(UP)

    def down(self) -> None:
        self._set(DOWN)

    def hang(self) -> None:
        self._set(HANG)

    def close(self) -> None:
        if self._token is not None and self._stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(10)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url_host_port(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    # ---- the loop ------------------------------------------------------------------------
    def _set(self, state: str) -> None:
        assert self._token is not None
        trio.from_thread.run_sync(self._switch, state, trio_token=self._token)

    def _switch(self, state: str) -> None:
        assert self._resume is not None
        self.state = state
        if state == DOWN:
            for link in list(self._links):
                link.scope.cancel()
        if state == UP:  # held connections flow again
            self._resume.set()
            self._resume = trio.Event()

    def _run(self) -> None:
        trio.run(self._main)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop, self._resume = trio.Event(), trio.Event()
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._accepted, listeners)
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def _accepted(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        if self.state == DOWN:
            await client.aclose()
            return
        link = _Link(client)
        self._links.add(link)
        try:
            with link.scope:
                await self._while_hanging()
                upstream = await trio.open_tcp_stream(*self.upstream)
                async with upstream, client, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
                    nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)
        except OSError:
            pass  # the upstream is gone: the client sees its connection close
        finally:
            self._links.discard(link)
            await trio.aclose_forcefully(client)

    async def _while_hanging(self) -> None:
        while self.state == HANG:
            assert self._resume is not None
            await self._resume.wait()

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream,
                    done: trio.CancelScope) -> None:
        try:
            while data := await source.receive_some(65536):
                await self._while_hanging()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()
