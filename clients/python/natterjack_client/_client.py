"""The REST half of the SDK: accounts, chats, history, status, message types, presence."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import trio

from ._errors import LoginRequired, Unavailable, from_body
from ._models import (
    Chat,
    ChatSummary,
    Credentials,
    HistoryPage,
    MessageStatus,
    MessageType,
    Presence,
)

if TYPE_CHECKING:
    from ._session import Session

DEFAULT_API = "http://127.0.0.1:8080"
CredentialsListener = Callable[[Credentials], None]


class Client:
    """One user's device against one natterjack API.

    ``on_credentials`` is called with every new token pair (login and each refresh; a
    refresh token works once, so store the new pair if you keep one).
    """

    def __init__(self, api_url: str = DEFAULT_API, *, credentials: Credentials | None = None,
                 on_credentials: CredentialsListener | None = None, timeout: float = 10.0):
        self.api_url = api_url.rstrip("/")
        self.credentials = credentials
        self.on_credentials = on_credentials
        self._http = httpx.AsyncClient(base_url=self.api_url, timeout=timeout)
        self._refresh_lock = trio.Lock()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def connect(self, **options: Any) -> Session:
        """A WebSocket session (``async with client.connect() as session``); see ``Session``."""
        from ._session import Session
        return Session(self, **options)

    # accounts

    async def register(self, username: str, password: str, display_name: str | None = None) -> str:
        """Create an account; returns its user_id."""
        body = _without_none(username=username, password=password, display_name=display_name)
        return str((await self._call("POST", "/api/v1/auth/register", json=body, auth=False))["user_id"])

    async def login(self, username: str, password: str, device_id: str | None = None) -> Credentials:
        body = _without_none(username=username, password=password, device_id=device_id)
        return self._store(await self._call("POST", "/api/v1/auth/login", json=body, auth=False))

    async def refresh(self, stale_access_token: str | None = None) -> Credentials:
        """A new token pair. With ``stale_access_token``: only if nobody refreshed it meanwhile
        (two refreshes of one refresh token would revoke the session)."""
        async with self._refresh_lock:
            held = self._require_credentials()
            if stale_access_token is not None and held.access_token != stale_access_token:
                return held
            body = {"refresh_token": held.refresh_token}
            return self._store(await self._call("POST", "/api/v1/auth/refresh", json=body, auth=False))

    async def logout(self) -> None:
        await self._call("POST", "/api/v1/auth/logout")
        self.credentials = None

    # chats

    async def chats(self) -> list[ChatSummary]:
        body = await self._call("GET", "/api/v1/chats")
        return [ChatSummary.from_json(chat) for chat in body["chats"]]

    async def create_chat(self, members: list[str], *, type: str = "group",
                          name: str | None = None) -> Chat:
        """A new chat; for ``type="direct"`` the existing chat with that user if there is one."""
        body = _without_none(type=type, members=members, name=name)
        return Chat.from_json(await self._call("POST", "/api/v1/chats", json=body))

    async def chat(self, chat_id: str) -> Chat:
        return Chat.from_json(await self._call("GET", f"/api/v1/chats/{chat_id}"))

    async def add_member(self, chat_id: str, user_id: str, role: str | None = None) -> Chat:
        body = _without_none(user_id=user_id, role=role)
        return Chat.from_json(await self._call("POST", f"/api/v1/chats/{chat_id}/members", json=body))

    async def remove_member(self, chat_id: str, user_id: str) -> None:
        """Remove a member (owners/admins), or leave when ``user_id`` is your own."""
        await self._call("DELETE", f"/api/v1/chats/{chat_id}/members/{user_id}")

    # messages

    async def history(self, chat_id: str, *, before_seq: int | None = None,
                      after_seq: int | None = None, limit: int | None = None) -> HistoryPage:
        """One page, ascending seq; bounds are exclusive (see the contract's history paging)."""
        params = _without_none(before_seq=before_seq, after_seq=after_seq, limit=limit)
        return HistoryPage.from_json(await self._call("GET", f"/api/v1/chats/{chat_id}/messages",
                                                      params=params))

    async def read(self, chat_id: str, seq: int) -> None:
        """Move the user's cumulative read position."""
        await self._call("POST", f"/api/v1/chats/{chat_id}/read", json={"seq": seq})

    async def message_status(self, message_id: str) -> MessageStatus:
        return MessageStatus.from_json(await self._call("GET", f"/api/v1/messages/{message_id}/status"))

    async def register_message_type(self, name: str, schema: dict[str, Any],
                                    version: int | None = None) -> MessageType:
        body = _without_none(name=name, schema=schema, version=version)
        return MessageType.from_json(await self._call("POST", "/api/v1/message-types", json=body))

    async def message_types(self) -> list[MessageType]:
        body = await self._call("GET", "/api/v1/message-types")
        return [MessageType.from_json(item) for item in body["types"]]

    async def presence(self, user_id: str) -> Presence:
        return Presence.from_json(await self._call("GET", f"/api/v1/users/{user_id}/presence"))

    # plumbing

    def _require_credentials(self) -> Credentials:
        if self.credentials is None:
            raise LoginRequired("not logged in")
        return self.credentials

    def _store(self, body: dict[str, Any]) -> Credentials:
        self.credentials = Credentials.from_json(body)
        if self.on_credentials is not None:
            self.on_credentials(self.credentials)
        return self.credentials

    async def _call(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        """The JSON answer; an expired access token is refreshed once and the call repeated."""
        token = self._require_credentials().access_token if auth else None
        answer = await self._send(method, path, token, **kwargs)
        if answer.status_code == 401 and token is not None:
            token = (await self.refresh(stale_access_token=token)).access_token
            answer = await self._send(method, path, token, **kwargs)
        if answer.status_code >= 400:
            raise from_body(answer.status_code, _json_or_none(answer))
        return _json_or_none(answer) if answer.content else {}

    async def _send(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach {self.api_url}: {exc or type(exc).__name__}") from exc


def _without_none(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _json_or_none(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None

