"""The baseline: a bare trio-websocket relay, no auth, no storage, no acks.

    python -m bench.load.relay PORT

A client connects to ``/ws?token=NAME`` and is known by NAME. A text frame that names
another client in ``chat_id`` (the load clients put the recipient's name there) is
written to that client as it is; any other frame is dropped. This is the least a chat
server must do for a message to go from A to B over WebSockets, measured by the same
clients on the same machine as the product.
"""

from __future__ import annotations

import contextlib
import json
import sys
from urllib.parse import parse_qs, urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

Peers = dict[str, WebSocketConnection]


def name_of(path: str) -> str:
    return parse_qs(urlsplit(path).query).get("token", [""])[0]


async def forward(peers: Peers, text: str | bytes) -> None:
    """Write ``text`` to the client named in its ``chat_id``, if that client is here."""
    try:
        target = peers.get(str(json.loads(text).get("chat_id")))
    except (ValueError, AttributeError):
        return
    if target is not None:
        with contextlib.suppress(ConnectionClosed):
            await target.send_message(text)


def handler(peers: Peers):  # noqa: ANN201 - serve_websocket's handler type
    async def serve(request: WebSocketRequest) -> None:
        name = name_of(request.path)
        ws = await request.accept()
        peers[name] = ws
        try:
            while True:
                await forward(peers, await ws.get_message())
        except ConnectionClosed:
            pass
        finally:
            if peers.get(name) is ws:
                del peers[name]
    return serve


async def serve(port: int, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve on ``port`` (0: any free one); task_status gets the port it listens on."""
    peers: Peers = {}
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler(peers), "127.0.0.1", port, None)
        task_status.started(server.port)


if __name__ == "__main__":
    trio.run(serve, int(sys.argv[1]))
