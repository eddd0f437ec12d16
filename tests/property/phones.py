"""Real WebSocket clients for hypothesis tests, kept connected across examples.

Hypothesis examples are synchronous; the clients live in one background thread with its
own trio loop (``Phones.run`` executes a coroutine function there). Each ``Phone`` is one
logged-in device: it reads frames in the background into ``frames`` and acks stored
events by its ``policy``, the way a real client acks what it holds.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, connect_websocket_url

from tests.checker import Device, Recorder
from tests.e2e.client import User, register_and_login, validate_frame
from tests.stacks import running_stack
from tools.stack import Stack, running_nats

T = TypeVar("T")
STORED = ("new_message", "message_updated", "chat_updated", "void")
ACK_ALL, ACK_NOT_MESSAGES = "all", "not_messages"


@dataclass(eq=False)
class Phone:
    user: User
    ws_url: str
    policy: str = ACK_ALL
    frames: list[dict[str, Any]] = field(default_factory=list)
    ws: WebSocketConnection | None = None
    recorder: Recorder | None = None  # when set, every send and every frame read is recorded
    _scope: trio.CancelScope | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.user.user_id, self.user.device_id)

    @property
    def device(self) -> Device:
        return Device(self.user.user_id, self.user.device_id)

    async def connect(self, nursery: trio.Nursery) -> None:
        self.ws = await connect_websocket_url(nursery, f"{self.ws_url}?token={self.user.access_token}")
        await nursery.start(self._read)

    async def disconnect(self) -> None:
        if self.ws is not None:
            ws, self.ws = self.ws, None
            await ws.aclose()
        if self._scope is not None:
            self._scope.cancel()

    async def _read(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self._scope:
            task_status.started()
            assert self.ws is not None
            ws = self.ws
            try:
                while True:
                    frame = validate_frame(orjson.loads(await ws.get_message()))
                    self.frames.append(frame)
                    if self.recorder is not None:
                        self.recorder.observe(self.device, frame)
                    if frame["type"] in STORED and self._acks(frame):
                        # Closing: the ack cannot go out, but what was sent before the close
                        # frame is still read (e.g. the answers to sends in flight).
                        with contextlib.suppress(ConnectionClosed):
                            await self.send({"type": "ack", "chat_id": frame["chat_id"], "seq": frame["seq"]})
            except ConnectionClosed:
                pass

    def _acks(self, frame: dict[str, Any]) -> bool:
        return self.policy == ACK_ALL or (self.policy == ACK_NOT_MESSAGES and frame["type"] != "new_message")

    async def send(self, frame: dict[str, Any]) -> None:
        if self.ws is not None:
            await self.ws.send_message(orjson.dumps(frame).decode())

    async def send_text(self, chat_id: str, text: str, timeout: float = 10) -> dict[str, Any] | None:
        """Send a text; the message_ack or error frame, or None when the socket was lost."""
        frame = {"type": "send_message", "id": secrets.token_hex(8), "chat_id": chat_id, "content": text}
        start = len(self.frames)
        if self.recorder is not None:
            self.recorder.sent(self.device, frame)
        try:
            await self.send(frame)
            return await self.wait_for(lambda f: f["type"] in ("message_ack", "error")
                                       and f.get("id") == frame["id"], start, timeout)
        except (ConnectionClosed, trio.TooSlowError):
            if self.recorder is not None:
                self.recorder.failed(self.device, frame["id"])
            return None

    async def wait_for(self, match: Callable[[dict[str, Any]], bool], start: int = 0,
                       timeout: float = 10) -> dict[str, Any]:
        """The first frame from index ``start`` on that matches (waiting for it)."""
        with trio.fail_after(timeout):
            while True:
                for frame in self.frames[start:]:
                    if match(frame):
                        return frame
                await trio.sleep(0.005)

    def of_chat(self, chat_id: str, *types: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("chat_id") == chat_id and f["type"] in types]


class Phones:
    """``count`` registered users with one connected device each, in a trio thread."""

    def __init__(self, api: str, ws_url: str, count: int):
        self.api, self.ws_url, self.count = api, ws_url, count
        self.phones: list[Phone] = []
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._thread, name="phones", daemon=True)

    def start(self) -> Phones:
        self.thread.start()
        self.ready.wait(60)
        if self.error is not None or not self.ready.is_set():
            raise RuntimeError("phones did not start") from self.error
        return self

    def _thread(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with httpx.AsyncClient(base_url=self.api) as http, trio.open_nursery() as nursery:
            self.http, self.nursery = http, nursery
            for _ in range(self.count):
                user = await register_and_login(http, f"ph_{secrets.token_hex(5)}")
                phone = Phone(user, self.ws_url)
                await phone.connect(nursery)
                self.phones.append(phone)
            self.token = trio.lowlevel.current_trio_token()
            self.ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return trio.from_thread.run(fn, *args, trio_token=self.token)
        except trio.RunFinishedError:
            raise RuntimeError("the phones' thread died (a reader failed)") from self.error

    def stop(self) -> None:
        if self.error is not None:  # a reader failed (e.g. a frame broke its schema): say why
            raise RuntimeError("the phones' thread died") from self.error
        trio.from_thread.run_sync(self._stop.set, trio_token=self.token)
        self.thread.join(10)

    async def group(self, owner: Phone, others: list[Phone]) -> str:
        """A new group chat; returns once every member's socket has its creation event."""
        answer = await self.http.post("/api/v1/chats", headers=owner.user.auth, json={
            "type": "group", "name": "prop", "members": [p.user.user_id for p in others]})
        assert answer.status_code == 201, answer.text
        chat_id = answer.json()["chat_id"]
        for phone in [owner, *others]:
            if phone.ws is not None:
                await phone.wait_for(lambda f: f["type"] == "chat_updated" and f["chat_id"] == chat_id)
        return str(chat_id)

    async def go_offline(self, phone: Phone) -> None:
        """Close ``phone``'s socket and wait until its gateway has let the device go: the
        property is about offline devices, not ones whose close is still on its way."""
        await phone.disconnect()
        with trio.fail_after(10):
            while True:
                answer = await self.http.get(f"/api/v1/users/{phone.user.user_id}/presence",
                                             headers=phone.user.auth)
                if answer.status_code == 200 and answer.json()["status"] == "offline":
                    return
                await trio.sleep(0.01)

    async def status(self, asker: Phone, message_id: str) -> httpx.Response:
        return await self.http.get(f"/api/v1/messages/{message_id}/status", headers=asker.user.auth)


@contextlib.contextmanager
def phones_on_a_stack(common_env: Any, count: int, **env: str) -> Iterator[tuple[Stack, Phones]]:
    """The whole product with its own nats-server and ``env`` knobs, and ``count`` phones on it."""
    with running_nats("nj-phones-nats-") as nats, \
            running_stack(common_env, nats, NJ_LOG_LEVEL="warning", **env) as stack:
        pool = Phones(stack.api, stack.ws_url, count).start()
        try:
            yield stack, pool
        finally:
            pool.stop()
