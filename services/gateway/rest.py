"""The public HTTP API (``proto/openapi.yaml``): each route becomes one bus request."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs import ids, log, rpc
from libs.bus import Bus
from libs.cache import CacheUnavailable
from libs.errors import NatterjackError, Unauthenticated, Unavailable
from libs.http import error_response, json_response
from libs.tokens import Claims

from . import domain
from .errors import BadFrame, FrameTooLarge
from .keys import KeyRing
from .storage import Presence

MAX_BODY_BYTES = 1024 * 1024
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
Endpoint = Callable[[Request], Awaitable[Response]]


class RestApi:
    def __init__(self, bus: Bus, keys: KeyRing, timeout: float, ws_url: Callable[[str], str],
                 presence: Presence | None):
        self.bus = bus
        self.keys = keys
        self.timeout = timeout
        self.ws_url = ws_url
        self.presence = presence

    def routes(self) -> list[Route]:
        p = "/api/v1"
        return [
            Route(f"{p}/auth/register", self._wrap(self.register), methods=["POST"]),
            Route(f"{p}/auth/login", self._wrap(self.login), methods=["POST"]),
            Route(f"{p}/auth/refresh", self._wrap(self.refresh), methods=["POST"]),
            Route(f"{p}/auth/logout", self._wrap(self.logout), methods=["POST"]),
            Route(f"{p}/auth/sessions", self._wrap(self.sessions), methods=["GET"]),
            Route(f"{p}/auth/sessions/{{device_id}}", self._wrap(self.end_session), methods=["DELETE"]),
            Route(f"{p}/users/{{user_id}}/presence", self._wrap(self.user_presence), methods=["GET"]),
            Route(f"{p}/chats", self._wrap(self.create_chat), methods=["POST"]),
            Route(f"{p}/chats", self._wrap(self.list_chats), methods=["GET"]),
            Route(f"{p}/chats/{{chat_id}}", self._wrap(self.get_chat), methods=["GET"]),
            Route(f"{p}/chats/{{chat_id}}", self._wrap(self.rename_chat), methods=["PATCH"]),
            Route(f"{p}/chats/{{chat_id}}/owner", self._wrap(self.transfer_owner), methods=["POST"]),
            Route(f"{p}/chats/{{chat_id}}/members", self._wrap(self.add_member), methods=["POST"]),
            Route(f"{p}/chats/{{chat_id}}/members/{{user_id}}", self._wrap(self.remove_member),
                  methods=["DELETE"]),
            Route(f"{p}/chats/{{chat_id}}/messages", self._wrap(self.messages), methods=["GET"]),
            Route(f"{p}/chats/{{chat_id}}/messages/{{seq}}", self._wrap(self.edit_message), methods=["PATCH"]),
            Route(f"{p}/chats/{{chat_id}}/messages/{{seq}}", self._wrap(self.remove_message),
                  methods=["DELETE"]),
            Route(f"{p}/chats/{{chat_id}}/search", self._wrap(self.search), methods=["GET"]),
            Route(f"{p}/chats/{{chat_id}}/read", self._wrap(self.read), methods=["POST"]),
            Route(f"{p}/messages/{{message_id}}/status", self._wrap(self.message_status), methods=["GET"]),
            Route(f"{p}/message-types", self._wrap(self.register_type), methods=["POST"]),
            Route(f"{p}/message-types", self._wrap(self.list_types), methods=["GET"]),
        ]

    def _wrap(self, endpoint: Endpoint) -> Endpoint:
        async def run(request: Request) -> Response:
            log.bind_trace(request.headers.get(log.TRACE_HEADER))  # carried by the bus requests below
            try:
                return await endpoint(request)
            except NatterjackError as exc:
                return error_response(exc)
        return run

    async def _call(self, subject: str, payload: dict[str, Any]) -> Any:
        return await rpc.call(self.bus, subject, payload, timeout=self.timeout)

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise FrameTooLarge(f"body exceeds {MAX_BODY_BYTES} bytes")
        try:
            body = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            raise BadFrame("body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadFrame("body must be a JSON object")
        domain.check_depth(body)
        return body

    async def _with_ip(self, request: Request) -> dict[str, Any]:
        """The body plus the client's address, which auth rate-limits by."""
        body = await self._body(request)
        body.pop("client_ip", None)  # only the gateway may say where a request came from
        if request.client:
            body["client_ip"] = request.client.host
        return body

    async def _claims(self, request: Request) -> Claims:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("missing bearer token")
        return await self.keys.verify(token.strip())

    # ---- auth ---------------------------------------------------------------------------
    async def register(self, request: Request) -> Response:
        return json_response(await self._call("im.auth.register", await self._with_ip(request)), 201)

    async def login(self, request: Request) -> Response:
        answer = await self._call("im.auth.login", await self._with_ip(request))
        return json_response({**answer, "ws_url": self.ws_url(answer["user_id"])})

    async def refresh(self, request: Request) -> Response:
        answer = await self._call("im.auth.refresh", await self._body(request))
        return json_response({**answer, "ws_url": self.ws_url(answer["user_id"])})

    async def logout(self, request: Request) -> Response:
        claims = await self._claims(request)
        await self._call("im.auth.logout", {"session_id": claims.session_id})
        return Response(status_code=204)

    async def sessions(self, request: Request) -> Response:
        claims = await self._claims(request)
        return json_response(await self._call("im.auth.sessions.list", {
            "user_id": claims.user_id, "session_id": claims.session_id, "device_id": claims.device_id}))

    async def end_session(self, request: Request) -> Response:
        claims = await self._claims(request)
        await self._call("im.auth.sessions.revoke", {"user_id": claims.user_id,
                                                     "device_id": request.path_params["device_id"]})
        return Response(status_code=204)

    async def user_presence(self, request: Request) -> Response:
        await self._claims(request)
        if not ID_RE.fullmatch(request.path_params["user_id"]):
            raise BadFrame("user_id must be an id string", details={"path": "$.user_id"})
        if self.presence is None:
            raise Unavailable("presence is unavailable")
        try:
            return json_response(await self.presence.status(request.path_params["user_id"], ids.now_ms()))
        except CacheUnavailable as exc:
            raise Unavailable("presence is unavailable while Redis is down") from exc

    # ---- chats --------------------------------------------------------------------------
    async def create_chat(self, request: Request) -> Response:
        claims, body = await self._claims(request), await self._body(request)
        answer = await self._call("im.router.chat.create", {**body, "creator_id": claims.user_id})
        created = answer.pop("created", False)
        return json_response(answer, 201 if created else 200)

    async def list_chats(self, request: Request) -> Response:
        claims = await self._claims(request)
        return json_response(await self._call("im.router.chat.list", {"user_id": claims.user_id}))

    async def get_chat(self, request: Request) -> Response:
        claims = await self._claims(request)
        return json_response(await self._call("im.router.chat.get", {
            "user_id": claims.user_id, "chat_id": request.path_params["chat_id"]}))

    async def messages(self, request: Request) -> Response:
        claims = await self._claims(request)
        query: dict[str, Any] = {"chat_id": request.path_params["chat_id"], "user_id": claims.user_id}
        for name in ("before_seq", "after_seq", "limit"):
            if name in request.query_params:
                query[name] = _int_param(request.query_params[name], name)
        return json_response(await self._call("im.history.page", query))

    async def _act(self, request: Request, subject: str, extra: dict[str, Any]) -> Any:
        """A chat change by the caller: {actor_id, chat_id, **body, **extra} to the router."""
        claims, body = await self._claims(request), await self._body(request)
        return await self._call(subject, {**body, **extra, "actor_id": claims.user_id,
                                          "actor_device_id": claims.device_id,
                                          "chat_id": request.path_params["chat_id"]})

    async def rename_chat(self, request: Request) -> Response:
        return json_response(await self._act(request, "im.router.chat.update", {}))

    async def transfer_owner(self, request: Request) -> Response:
        return json_response(await self._act(request, "im.router.owner.transfer", {}))

    async def add_member(self, request: Request) -> Response:
        answer = await self._act(request, "im.router.members.add", {})
        return json_response(answer, 201 if answer.pop("added", False) else 200)

    async def remove_member(self, request: Request) -> Response:
        await self._act(request, "im.router.members.remove", {"user_id": request.path_params["user_id"]})
        return Response(status_code=204)

    async def edit_message(self, request: Request) -> Response:
        seq = _int_param(request.path_params["seq"], "seq")
        return json_response(await self._act(request, "im.router.message.update",
                                             {"target_seq": seq, "kind": "edit"}))

    async def remove_message(self, request: Request) -> Response:
        seq = _int_param(request.path_params["seq"], "seq")
        mode = request.query_params.get("mode", "recall")
        if mode not in ("recall", "delete"):
            raise BadFrame("mode must be recall or delete", details={"path": "$.mode"})
        return json_response(await self._act(request, "im.router.message.update",
                                             {"target_seq": seq, "kind": mode}))

    async def search(self, request: Request) -> Response:
        claims = await self._claims(request)
        query: dict[str, Any] = {"chat_id": request.path_params["chat_id"], "user_id": claims.user_id,
                                 "q": request.query_params.get("q", "")}
        for name in ("before_seq", "limit"):
            if name in request.query_params:
                query[name] = _int_param(request.query_params[name], name)
        return json_response(await self._call("im.history.search", query))

    async def message_status(self, request: Request) -> Response:
        claims = await self._claims(request)
        return json_response(await self._call("im.dlv.status", {
            "user_id": claims.user_id, "message_id": request.path_params["message_id"]}))

    async def register_type(self, request: Request) -> Response:
        claims, body = await self._claims(request), await self._body(request)
        answer = await self._call("im.router.types.register", {**body, "registrant_id": claims.user_id})
        return json_response(answer, 201 if answer.get("created") else 200)

    async def list_types(self, request: Request) -> Response:
        await self._claims(request)
        return json_response(await self._call("im.router.types.list", {}))

    async def read(self, request: Request) -> Response:
        claims, body = await self._claims(request), await self._body(request)
        await self._call("im.router.read", {"user_id": claims.user_id, "seq": body.get("seq"),
                                            "chat_id": request.path_params["chat_id"]})
        return Response(status_code=204)


def _int_param(value: str, name: str) -> int:
    try:
        if not -(1 << 63) <= (number := int(value)) < 1 << 63:  # orjson carries 64-bit integers only
            raise ValueError(value)
        return number
    except ValueError:
        raise BadFrame(f"{name} must be an integer", details={"path": f"$.{name}"}) from None
