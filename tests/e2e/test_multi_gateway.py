"""Several gateway processes: sessions, presence and devices work across them."""

from __future__ import annotations

import secrets

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from .client import login, next_frame, register_and_login, send

pytestmark = pytest.mark.e2e


def _name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def second_gateway(stack):
    return stack.start_gateway("gateway2")


def _ws(url: str, user) -> str:
    return f"{url}?token={user.access_token}"


async def test_logout_closes_the_socket_on_another_gateway_within_a_second(stack, second_gateway):
    _, ws2 = second_gateway
    async with httpx.AsyncClient(base_url=stack.api) as http:
        user = await register_and_login(http, _name("gina"))
        async with open_websocket_url(_ws(ws2, user)) as ws:
            await send(ws, {"type": "ping"})
            await next_frame(ws, "pong")
            assert (await http.post("/api/v1/auth/logout", headers=user.auth)).status_code == 204
            with trio.fail_after(1.0):
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await ws.get_message()
            assert closed.value.reason.code == 4401


async def test_presence_is_seen_through_any_gateway(stack, second_gateway):
    _, ws2 = second_gateway
    async with httpx.AsyncClient(base_url=stack.api) as http:
        hank, ivy = await register_and_login(http, _name("hank")), await register_and_login(http, _name("ivy"))
        url = f"/api/v1/users/{hank.user_id}/presence"
        async with open_websocket_url(_ws(ws2, hank)) as ws:
            await send(ws, {"type": "ping"})
            await next_frame(ws, "pong")
            online = (await http.get(url, headers=ivy.auth)).json()
            assert online["status"] == "online"
        with trio.fail_after(5):
            while (offline := (await http.get(url, headers=ivy.auth)).json())["status"] != "offline":  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert offline["last_seen_ts"] >= online["last_seen_ts"] - 60_000


async def test_every_device_of_a_user_gets_messages_and_the_senders_other_devices_a_copy(stack, second_gateway):
    api2, ws2 = second_gateway
    async with httpx.AsyncClient(base_url=stack.api) as http, httpx.AsyncClient(base_url=api2) as http2:
        jack_phone = await register_and_login(http, _name("jack"), device_id="phone")
        jack_laptop = await login(http2, jack_phone.username, device_id="laptop")
        kim = await register_and_login(http, _name("kim"))
        chat = (await http.post("/api/v1/chats", json={"type": "direct", "members": [kim.user_id]},
                                headers=jack_phone.auth)).json()["chat_id"]
        async with open_websocket_url(_ws(stack.ws_url, jack_phone)) as phone, \
                open_websocket_url(_ws(ws2, jack_laptop)) as laptop, \
                open_websocket_url(_ws(stack.ws_url, kim)) as kim_ws:
            for ws in (phone, laptop, kim_ws):
                await next_frame(ws, "sync_done")
            await send(kim_ws, {"type": "send_message", "id": "k1", "chat_id": chat, "content": "to both"})
            for ws in (phone, laptop):
                assert (await next_frame(ws, "new_message"))["content"] == "to both"
            await send(phone, {"type": "send_message", "id": "j1", "chat_id": chat, "content": "from phone"})
            ack = await next_frame(phone, "message_ack")
            copy = await next_frame(laptop, "new_message")
            assert (copy["content"], copy["seq"], copy["sender_device_id"]) == ("from phone", ack["seq"], "phone")
            assert (await next_frame(kim_ws, "new_message"))["content"] == "from phone"


async def test_logins_spread_users_over_live_gateways_and_stick(stack, second_gateway):
    _, ws2 = second_gateway
    async with httpx.AsyncClient(base_url=stack.api) as http:
        await trio.sleep(0.5)  # both gateways have announced themselves by now
        users = [await register_and_login(http, _name("u")) for _ in range(16)]
        urls = {u.ws_url for u in users}
        assert urls == {stack.ws_url, ws2}
        again = await http.post("/api/v1/auth/login", json={"username": users[0].username,
                                                            "password": "correct horse battery", "device_id": "d2"})
        assert again.json()["ws_url"] == users[0].ws_url


async def test_chat_peers_get_presence_updates_across_gateways(stack, second_gateway):
    _, ws2 = second_gateway
    async with httpx.AsyncClient(base_url=stack.api) as http:
        lea, max_ = await register_and_login(http, _name("lea")), await register_and_login(http, _name("max"))
        await http.post("/api/v1/chats", json={"type": "direct", "members": [max_.user_id]}, headers=lea.auth)
        async with open_websocket_url(_ws(stack.ws_url, lea)) as lea_ws:
            await next_frame(lea_ws, "sync_done")
            async with open_websocket_url(_ws(ws2, max_)) as max_ws:
                await next_frame(max_ws, "sync_done")
                update = await next_frame(lea_ws, "presence_update")
                assert (update["user_id"], update["status"]) == (max_.user_id, "online")
            update = await next_frame(lea_ws, "presence_update")
            assert (update["user_id"], update["status"]) == (max_.user_id, "offline")


async def test_a_crashed_gateways_devices_go_offline_within_the_ttl(stack):
    _, ws3 = stack.start_gateway("gateway3")
    async with httpx.AsyncClient(base_url=stack.api) as http:
        ned, olga = await register_and_login(http, _name("ned")), await register_and_login(http, _name("olga"))
        url = f"/api/v1/users/{ned.user_id}/presence"
        async with open_websocket_url(_ws(ws3, ned), disconnect_timeout=1) as ws:
            await send(ws, {"type": "ping"})
            await next_frame(ws, "pong")
            assert (await http.get(url, headers=olga.auth)).json()["status"] == "online"
            stack.stop("gateway3", kill=True)  # kill -9: no clean-up runs
            with trio.fail_after(3 * 2 + 2):  # NJ_PRESENCE_TTL_S is 3 in these tests
                while (await http.get(url, headers=olga.auth)).json()["status"] != "offline":  # noqa: ASYNC110
                    await trio.sleep(0.2)
