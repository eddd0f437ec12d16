"""The product on a nats-server that admits only one user per service, each allowed just the
subjects proto/subjects.yaml grants it: everything works end to end, and a service's user
cannot publish or subscribe outside its grants (nobody but the gateway sends as a user)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest
import trio
from trio_websocket import open_websocket_url

from libs.natsd import (
    ADMIN,
    SERVICE_USERS,
    NatsServer,
    authorization,
    nats_server_binary,
    new_passwords,
    subject_permissions,
)
from tests.e2e.client import direct_pair, next_frame, send
from tests.stacks import running_stack
from tools.stack import SERVICES, Stack, running_nats

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def users_nats() -> Iterator[NatsServer]:
    with running_nats("nj-users-nats-", users=True) as server:
        yield server


@pytest.fixture(scope="module")
def stack(common_env, users_nats: NatsServer) -> Iterator[Stack]:
    with running_stack(common_env, users_nats, NJ_LOG_LEVEL="info") as running:
        yield running


async def test_a_message_goes_end_to_end_with_per_service_users(stack: Stack):
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as http:
        ann, bob, chat_id = await direct_pair(http, "mx")
        async with open_websocket_url(f"{ann.ws_url}?token={ann.access_token}") as a_ws, \
                open_websocket_url(f"{bob.ws_url}?token={bob.access_token}") as b_ws:
            await next_frame(a_ws, "sync_done")
            await next_frame(b_ws, "sync_done")
            await send(a_ws, {"type": "send_message", "id": "u1", "chat_id": chat_id,
                              "content": "per-service users"})
            ack = await next_frame(a_ws, "message_ack")  # router -> JetStream
            got = await next_frame(b_ws, "new_message")  # router -> gateway
            assert got["seq"] == ack["seq"]
            await send(b_ws, {"type": "ack", "chat_id": chat_id, "seq": got["seq"]})
            receipt = await next_frame(a_ws, "receipt", timeout=20)  # delivery-retry -> gateway
            assert receipt["status"] == "delivered"
        with trio.fail_after(20):  # history's consumer stored it
            while True:
                page = await http.get(f"/api/v1/chats/{chat_id}/messages", headers=bob.auth)
                if any(e.get("seq") == ack["seq"] for e in page.json()["events"]):
                    break
                await trio.sleep(0.2)
        logout = await http.post("/api/v1/auth/logout", headers=bob.auth)  # auth -> revocation
        assert logout.status_code in (200, 204), logout.text
    for service in SERVICES:
        assert "permissions violation" not in stack.tail(service, lines=100_000).lower(), service


async def _violations(server: NatsServer, user: str, *, publish: tuple[str, ...] = (),
                      subscribe: tuple[str, ...] = ()) -> tuple[list[str], int]:
    """(errors the server sent ``user``, messages an admin saw on the ``publish`` subjects)."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    admin = await nats.connect(server.url, user=ADMIN, password=server.users[ADMIN])
    seen = [0]

    async def count(_: object) -> None:
        seen[0] += 1
    for subject in publish:
        await admin.subscribe(subject, cb=count)
    await admin.flush()
    client = await nats.connect(server.url, user=user, password=server.users[user], error_cb=on_error,
                                allow_reconnect=False)
    for subject in subscribe:
        await client.subscribe(subject)
    for subject in publish:
        await client.publish(subject, b'{"user_id":"forged"}')
    await client.flush()
    await asyncio.sleep(0.5)
    await client.close()
    await admin.close()
    return errors, seen[0]


def _check(server: NatsServer, user: str, **subjects: tuple[str, ...]) -> tuple[list[str], int]:
    return asyncio.run(_violations(server, user, **subjects))


@pytest.mark.parametrize(("user", "subject"), [
    ("router", "im.router.send"),  # only the gateway sends on behalf of a user
    ("delivery-retry", "im.router.send"),
    ("auth", "im.gw.gw-x.deliver"),  # only router and delivery-retry deliver to sockets
    ("history", "im.gw.all.deliver"),
    ("router", "im.gw.announce"),  # only a gateway announces itself
    ("gateway", "im.msg.chat1"),  # only the router writes to the stream
    ("history", "im.evt.session.revoked.u1"),  # only auth ends sessions
])
def test_a_service_cannot_publish_outside_its_grants(users_nats: NatsServer, user: str,
                                                     subject: str):
    errors, seen = _check(users_nats, user, publish=(subject,))
    assert seen == 0
    assert any("permissions violation for publish" in e.lower() for e in errors), errors


@pytest.mark.parametrize(("user", "subject"), [
    ("router", "im.gw.gw-x.deliver"),  # nobody but gateways reads socket deliveries
    ("history", "im.auth.>"),
    ("auth", "im.msg.>"),
])
def test_a_service_cannot_subscribe_outside_its_grants(users_nats: NatsServer, user: str,
                                                       subject: str):
    errors, _ = _check(users_nats, user, subscribe=(subject,))
    assert any("permissions violation for subscription" in e.lower() for e in errors), errors


def test_no_anonymous_or_wrong_password_connection(users_nats: NatsServer):
    async def connect(**auth: str) -> None:
        nc = await nats.connect(users_nats.url, allow_reconnect=False, connect_timeout=2,
                                max_reconnect_attempts=0, **auth)
        await nc.close()

    for auth in ({}, {"user": "router", "password": "njwrong"}):
        with pytest.raises((nats.errors.Error, OSError)):
            asyncio.run(connect(**auth))


def test_generated_users_grant_exactly_subjects_yaml(tmp_path: Path):
    """The config start_nats writes, read back like the deploy configs are: the same grants."""
    from tests.unit.test_nats_permissions import SUBJECTS, conf_permissions, subjects_permissions

    users = new_passwords()
    text = authorization(users, subject_permissions())
    granted = conf_permissions(text.replace("{user:", "{\n user:").replace(", password", "\n password"))
    expected = subjects_permissions(SUBJECTS.read_text())
    assert set(granted) == {*SERVICE_USERS, ADMIN}
    for user in SERVICE_USERS:
        assert {d: granted[user][d] for d in ("publish", "subscribe")} == expected[user], user
    conf = tmp_path / "users.conf"
    conf.write_text(text)
    checked = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], capture_output=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stderr.decode()
