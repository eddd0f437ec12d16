"""A small test client: REST with httpx, WebSocket with trio-websocket, frames as dicts."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import fastjsonschema
import httpx
import orjson
import trio
from trio_websocket import WebSocketConnection

from libs import contracts


@dataclass
class User:
    username: str
    user_id: str
    device_id: str
    access_token: str
    ws_url: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


PASSWORD = "correct horse battery"


async def register_and_login(http: httpx.AsyncClient, username: str, device_id: str = "d1") -> User:
    created = await http.post("/api/v1/auth/register", json={"username": username, "password": PASSWORD})
    assert created.status_code == 201, created.text
    return await login(http, username, device_id)


async def direct_pair(http: httpx.AsyncClient, prefix: str) -> tuple[User, User, str]:
    """Two new users and the direct chat the first opens with the second."""
    a = await register_and_login(http, f"{prefix}a_{secrets.token_hex(4)}")
    b = await register_and_login(http, f"{prefix}b_{secrets.token_hex(4)}")
    chat = await http.post("/api/v1/chats", headers=a.auth, json={"type": "direct", "members": [b.user_id]})
    assert chat.status_code == 201, chat.text
    return a, b, str(chat.json()["chat_id"])


async def login(http: httpx.AsyncClient, username: str, device_id: str) -> User:
    login = await http.post("/api/v1/auth/login",
                            json={"username": username, "password": PASSWORD, "device_id": device_id})
    assert login.status_code == 200, login.text
    body = login.json()
    return User(username, body["user_id"], body["device_id"], body["access_token"], body["ws_url"])


async def send(ws: WebSocketConnection, frame: dict[str, Any]) -> None:
    await ws.send_message(orjson.dumps(frame).decode())


async def next_frame(ws: WebSocketConnection, *types: str, timeout: float = 10) -> dict[str, Any]:
    """The next frame of one of ``types`` (others are skipped)."""
    with trio.fail_after(timeout):
        while True:
            frame = validate_frame(orjson.loads(await ws.get_message()))
            if not types or frame["type"] in types:
                return frame


def validate_frame(frame: dict[str, Any]) -> dict[str, Any]:
    """``frame`` after checking it against proto/schemas/ws/server/<type>.json (AssertionError if not)."""
    kind = frame.get("type")
    path = contracts.proto_dir() / "schemas" / "ws" / "server" / f"{kind}.json"
    assert isinstance(kind, str) and path.is_file(), f"server frame of unknown type: {frame}"
    try:
        contracts.validator(f"schemas/ws/server/{kind}.json")(frame)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise AssertionError(f"{kind} frame breaks its schema: {exc.message}: {frame}") from None
    return frame
