"""Groups, roles, custom types, edits, receipts and typing through the running services."""

from __future__ import annotations

import secrets

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from .client import next_frame, register_and_login, send

pytestmark = pytest.mark.e2e


def _name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


async def _people(http: httpx.AsyncClient, *names: str):
    return [await register_and_login(http, _name(n)) for n in names]


def _ws(stack, user) -> str:
    return f"{stack.ws_url}?token={user.access_token}"


async def test_group_roles_and_membership_changes(stack):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        owner, admin, member, outsider = await _people(http, "own", "adm", "mem", "out")
        created = await http.post("/api/v1/chats", headers=owner.auth, json={
            "type": "group", "name": "team", "members": [admin.user_id, member.user_id]})
        assert created.status_code == 201, created.text
        chat = created.json()["chat_id"]
        promote = await http.post(f"/api/v1/chats/{chat}/members", headers=owner.auth,
                                  json={"user_id": admin.user_id, "role": "admin"})
        assert promote.status_code == 200, promote.text  # a role change, not an addition
        added = await http.post(f"/api/v1/chats/{chat}/members", headers=admin.auth,
                                json={"user_id": outsider.user_id})
        assert added.status_code == 201, added.text
        denied = await http.post(f"/api/v1/chats/{chat}/members", headers=member.auth,
                                 json={"user_id": owner.user_id, "role": "admin"})
        assert denied.status_code == 403 and denied.json()["error"]["code"] == 4003
        assert (await http.delete(f"/api/v1/chats/{chat}/members/{outsider.user_id}",
                                  headers=outsider.auth)).status_code == 204  # leave
        renamed = await http.patch(f"/api/v1/chats/{chat}", headers=admin.auth, json={"name": "crew"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "crew"
        view = (await http.get(f"/api/v1/chats/{chat}", headers=member.auth)).json()
        roles = {m["user_id"]: m["role"] for m in view["members"]}
        assert roles == {owner.user_id: "owner", admin.user_id: "admin", member.user_id: "member"}
        with trio.fail_after(5):  # history learns of the leave from the stream, moments later
            while (await http.get(f"/api/v1/chats/{chat}/messages", headers=outsider.auth)).status_code != 403:  # noqa: ASYNC110
                await trio.sleep(0.05)
        with trio.fail_after(10):
            while True:
                answer = await http.get(f"/api/v1/chats/{chat}/messages", headers=member.auth)
                page = answer.json() if answer.status_code == 200 else {"events": []}
                kinds = [e.get("kind") for e in page["events"] if e["type"] == "chat_updated"]
                if "renamed" in kinds:
                    break
                await trio.sleep(0.05)
        assert kinds[0] == "created" and "member_removed" in kinds
        assert [e["seq"] for e in page["events"]] == list(range(1, len(page["events"]) + 1))


async def test_custom_type_round_trip_and_schema_errors(stack):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        ann, ben = await _people(http, "ann", "ben")
        name = f"poll{secrets.token_hex(3)}"
        schema = {"type": "object", "required": ["question", "options"],
                  "properties": {"question": {"type": "string"},
                                 "options": {"type": "array", "items": {"type": "string"}, "minItems": 2}}}
        registered = await http.post("/api/v1/message-types", headers=ann.auth,
                                     json={"name": name, "schema": schema})
        assert registered.status_code == 201, registered.text
        listed = (await http.get("/api/v1/message-types", headers=ben.auth)).json()["types"]
        assert any(t["name"] == name for t in listed) and any(t["name"] == "text" for t in listed)
        chat = (await http.post("/api/v1/chats", headers=ann.auth,
                                json={"type": "direct", "members": [ben.user_id]})).json()["chat_id"]
        content = {"zeta": {"b": 1, "a": [1.5, None, "ü"]}, "question": "lunch?", "options": ["yes", "no"]}
        async with open_websocket_url(_ws(stack, ann)) as ws:
            await send(ws, {"type": "send_message", "id": "p1", "chat_id": chat, "content_type": name,
                            "content": {"question": "x", "options": ["only one"]}})
            error = await next_frame(ws, "error")
            assert error["code"] == 4022 and error["details"]["path"].startswith("$.content.options")
            await send(ws, {"type": "send_message", "id": "p2", "chat_id": chat, "content_type": name,
                            "content": content})
            ack = await next_frame(ws, "message_ack")
            await send(ws, {"type": "send_message", "id": "p3", "chat_id": chat, "content_type": "nope",
                            "content": {}})
            assert (await next_frame(ws, "error"))["code"] == 4002
        with trio.fail_after(10):
            while True:  # history stores the chat moments after the ack
                answer = await http.get(f"/api/v1/chats/{chat}/messages?after_seq={ack['seq'] - 1}",
                                        headers=ben.auth)
                if answer.status_code == 200 and (page := answer.json())["events"]:
                    break
                await trio.sleep(0.05)
        stored = page["events"][0]
        assert stored["content"] == content and list(stored["content"]) == list(content)
        assert list(stored["content"]["zeta"]) == ["b", "a"]


async def test_edit_recall_receipts_typing_and_unread(stack):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        cat, dan = await _people(http, "cat", "dan")
        chat = (await http.post("/api/v1/chats", headers=cat.auth,
                                json={"type": "direct", "members": [dan.user_id]})).json()["chat_id"]
        async with open_websocket_url(_ws(stack, cat)) as cat_ws, open_websocket_url(_ws(stack, dan)) as dan_ws:
            await next_frame(dan_ws, "sync_done")
            await send(cat_ws, {"type": "send_message", "id": "e1", "chat_id": chat, "content": "helo"})
            ack = await next_frame(cat_ws, "message_ack")
            assert (await next_frame(dan_ws, "new_message"))["seq"] == ack["seq"]
            listed = (await http.get("/api/v1/chats", headers=dan.auth)).json()["chats"]
            assert next(c for c in listed if c["chat_id"] == chat)["unread"] >= 1
            edited = await http.patch(f"/api/v1/chats/{chat}/messages/{ack['seq']}", headers=cat.auth,
                                      json={"content": "hello"})
            assert edited.status_code == 200, edited.text
            update = await next_frame(dan_ws, "message_updated")
            assert (update["kind"], update["target_seq"], update["content"]) == ("edit", ack["seq"], "hello")
            not_yours = await http.patch(f"/api/v1/chats/{chat}/messages/{ack['seq']}", headers=dan.auth,
                                         json={"content": "hijack"})
            assert not_yours.status_code == 403
            await send(dan_ws, {"type": "read", "chat_id": chat, "seq": update["seq"]})
            receipt = await next_frame(cat_ws, "receipt")
            assert (receipt["user_id"], receipt["status"]) == (dan.user_id, "read")
            listed = (await http.get("/api/v1/chats", headers=dan.auth)).json()["chats"]
            assert next(c for c in listed if c["chat_id"] == chat)["unread"] == 0
            await send(dan_ws, {"type": "start_typing", "chat_id": chat})
            typing = await next_frame(cat_ws, "typing_indicator")
            assert (typing["user_id"], typing["typing"]) == (dan.user_id, True)
            await send(dan_ws, {"type": "stop_typing", "chat_id": chat})
            assert (await next_frame(cat_ws, "typing_indicator"))["typing"] is False
            recalled = await http.delete(f"/api/v1/chats/{chat}/messages/{ack['seq']}", headers=cat.auth)
            assert recalled.status_code == 200, recalled.text
            assert (await next_frame(dan_ws, "message_updated"))["kind"] == "recall"


async def test_resending_a_client_id_returns_the_original_ack_and_stores_once(stack):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        eve, fay = await _people(http, "eve", "fay")
        chat = (await http.post("/api/v1/chats", headers=eve.auth,
                                json={"type": "direct", "members": [fay.user_id]})).json()["chat_id"]
        async with open_websocket_url(_ws(stack, eve)) as ws:
            frame = {"type": "send_message", "id": "same-id", "chat_id": chat, "content": "once"}
            await send(ws, frame)
            first = await next_frame(ws, "message_ack")
            await send(ws, frame)
            second = await next_frame(ws, "message_ack")
        assert (second["message_id"], second["seq"]) == (first["message_id"], first["seq"])
        await trio.sleep(0.3)  # history has stored whatever was published
        page = (await http.get(f"/api/v1/chats/{chat}/messages", headers=fay.auth)).json()
        assert [e["content"] for e in page["events"] if e["type"] == "message"] == ["once"]
