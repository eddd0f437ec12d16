"""Seed 000 property 14 against the running product: a gateway shuts down under load.

auth, router, history and delivery-retry run once per module as processes. Each example
starts a gateway of its own in this process (``tools.service_thread``; a start costs a
NATS connection, not an interpreter), connects a drawn number of devices to it, has them
write a drawn number of sends, and asks it to stop, the way SIGTERM does
(``runtime.stopping``). ``test_sigterm_to_a_gateway_process`` does the same with a real
SIGTERM to a gateway process. ``NJ_SHUTDOWN_DEADLINE_S`` is 2 s.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.natsd import NatsServer
from services.gateway import app
from services.gateway.config import load
from services.router import app as router_app
from services.router.config import load as load_router
from tests.checker import Expectations, Recorder, StoredEvent, check, fetch_stored
from tests.e2e.client import User, register_and_login
from tests.property.faulty import HEALTH, PHASES, wait_until
from tests.property.phones import ACK_ALL, ACK_NOT_MESSAGES, Phone, Phones
from tools.service_thread import ServiceThread
from tools.stack import SERVICES, Stack, build_stack, running_nats

pytestmark = pytest.mark.timeout(600)
DEADLINE_S = 2.0
EXIT_S = 1.5  # a process's exit after its drain: closing NATS, the event loops, the interpreter
USERS = 4
GOING_AWAY = 1001


@dataclass
class Setup:
    stack: Stack
    nats: NatsServer
    pool: Phones  # the clients' trio thread (no phones of its own)
    users: list[User]
    chat_id: str
    mysql: Any
    router: ServiceThread  # in this process: examples stop it and start another


def start_router(env: dict[str, str]) -> ServiceThread:
    router = ServiceThread(router_app.main, load_router({**env, "NJ_ROUTER_HTTP_PORT": "0"}),
                           name="router-under-test")
    router.start()
    return router


@pytest.fixture(scope="module")
def setup(common_env, mysql_config) -> Iterator[Setup]:
    """auth, history, delivery-retry and a gateway as processes; the router in this process.
    Requests time out after 1 s, so one a stopping router never took fails fast."""
    with running_nats("nj-shutdown-nats-") as nats:
        env = common_env("e2e", NJ_NATS_URL=nats.url, NJ_SHUTDOWN_DEADLINE_S=str(DEADLINE_S),
                         NJ_REQUEST_TIMEOUT_S="1", NJ_LOG_LEVEL="warning", NJ_PRESENCE_TTL_S="3",
                         NJ_DLV_BACKOFF_S="5,10,20")
        env.pop("NJ_E2E_HTTP_PORT")
        stack = build_stack(env, Path(tempfile.mkdtemp(prefix="nj-shutdown-")))
        holder: list[ServiceThread] = [start_router(stack.env)]
        try:
            for service in SERVICES:
                if service != "router":
                    stack.start(service)
            for service in stack.processes:
                stack.wait_ready(service)
            pool = Phones(stack.api, stack.ws_url, 0).start()
            try:
                users = [pool.run(register_and_login, pool.http, f"sd_{secrets.token_hex(4)}")
                         for _ in range(USERS)]
                answer = pool.run(lambda: pool.http.post("/api/v1/chats", headers=users[0].auth, json={
                    "type": "group", "name": "shutdown", "members": [u.user_id for u in users[1:]]}))
                assert answer.status_code == 201, answer.text
                running = Setup(stack, nats, pool, users, answer.json()["chat_id"], mysql_config,
                                holder[0])
                yield running
                holder[0] = running.router
            finally:
                pool.stop()
        finally:
            stack.stop_all()
            holder[0].stop()
            shutil.rmtree(stack.log_dir, ignore_errors=True)


def gateway_connections(nats: NatsServer) -> int:
    """Client connections the nats-server holds for processes named ``gateway``."""
    answer = httpx.get(f"http://127.0.0.1:{nats.monitor_port}/connz", params={"limit": 1024}, timeout=5)
    return sum(1 for c in answer.json().get("connections", []) if c.get("name") == "gateway")


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


class Example:
    """The devices of one example, what they wrote, and what they read."""

    def __init__(self, setup: Setup, ws_url: str, devices: int, lazy: list[bool]):
        self.setup, self.recorder = setup, Recorder()
        self.phones = [Phone(setup.users[i], ws_url, ACK_NOT_MESSAGES if lazy[i] else ACK_ALL,
                             recorder=self.recorder) for i in range(devices)]
        self.sent: list[tuple[Phone, str]] = []
        self.frames: list[tuple[Phone, dict[str, Any]]] = []

    async def connect(self) -> None:
        for phone in self.phones:
            await phone.connect(self.setup.pool.nursery)

    async def write(self, senders: list[int]) -> None:
        """Write the sends without waiting for their answers: they are in flight."""
        for index in senders:
            phone = self.phones[index % len(self.phones)]
            frame = {"type": "send_message", "id": secrets.token_hex(8), "chat_id": self.setup.chat_id,
                     "content": f"s{secrets.token_hex(3)}"}
            self.recorder.sent(phone.device, frame)
            self.sent.append((phone, frame["id"]))
            self.frames.append((phone, frame))
            await phone.send(frame)

    def answer(self, phone: Phone, frame_id: str) -> dict[str, Any] | None:
        return next((f for f in phone.frames if f["type"] in ("message_ack", "error")
                     and f.get("id") == frame_id), None)

    def closed(self) -> bool:
        return all(p.ws is not None and p.ws.closed is not None for p in self.phones)

    def check(self) -> None:
        """Every socket got 1001; every send an answer before it (an error never 5000), or
        none and then it was never taken; every acked message stored once."""
        for phone in self.phones:
            assert phone.ws is not None and phone.ws.closed is not None
            assert phone.ws.closed.code == GOING_AWAY, phone.ws.closed
        unanswered = set()
        for phone, frame_id in self.sent:
            answer = self.answer(phone, frame_id)
            if answer is None:
                unanswered.add(frame_id)
                self.recorder.failed(phone.device, frame_id)
            elif answer["type"] == "error":
                assert answer["code"] != 5000, answer
        stored = self.stored()
        taken = {e.client_msg_id for e in stored} & unanswered
        assert not taken, f"sends stored but never answered (silently taken): {taken}"
        check(self.recorder, stored, Expectations(chats=[self.setup.chat_id])).assert_ok()

    async def resend_failed(self) -> None:
        """Every send answered (the gateway answers what the router never took with an
        error); each one that failed goes again with its id, and must be acked now."""
        for phone, frame_id in self.sent:
            answer = await phone.wait_for(lambda f, i=frame_id: f["type"] in ("message_ack", "error")
                                          and f.get("id") == i, timeout=10)
            assert answer["type"] == "message_ack" or answer["code"] != 5000, answer
            if answer["type"] == "error":
                frame = next(f for d, f in self.frames if f["id"] == frame_id)
                start = len(phone.frames)
                await phone.send(frame)
                again = await phone.wait_for(lambda f, i=frame_id: f["type"] in ("message_ack", "error")
                                             and f.get("id") == i, start, timeout=10)
                assert again["type"] == "message_ack", again

    def check_resent(self) -> None:
        """Every send is stored exactly once, acked where it is stored (checker)."""
        stored = self.stored()
        ids = [e.client_msg_id for e in stored if e.client_msg_id in {i for _, i in self.sent}]
        assert sorted(ids) == sorted(i for _, i in self.sent), "a send is missing or stored twice"
        check(self.recorder, stored, Expectations(chats=[self.setup.chat_id])).assert_ok()

    async def disconnect(self) -> None:
        for phone in self.phones:
            await phone.disconnect()

    def stored(self) -> list[StoredEvent]:
        """The chat as stored once history holds every number the router handed out."""
        setup = self.setup

        async def last_seq() -> int:
            answer = await setup.pool.http.get(f"/api/v1/chats/{setup.chat_id}",
                                               headers=setup.users[0].auth)
            return int(answer.json()["last_seq"])

        async def go() -> list[StoredEvent]:
            top = await last_seq()
            with trio.fail_after(15):
                while True:
                    stored = await fetch_stored(setup.mysql, [setup.chat_id])
                    if {e.seq for e in stored} >= set(range(1, top + 1)):
                        return stored
                    await trio.sleep(0.05)
        return setup.pool.run(go)


def watch_ready(url: str, stop: threading.Event, seen: list[int]) -> None:
    """/ready's status codes until the port closes (or ``stop``)."""
    with httpx.Client() as http:
        while not stop.is_set():
            try:
                seen.append(http.get(f"{url}/ready", timeout=1).status_code)
            except httpx.HTTPError:
                return
            time.sleep(0.005)


def stop_and_watch(stop: Any, http_url: str) -> tuple[float, list[int]]:
    """Run ``stop()`` (returns once the gateway is gone) while watching its /ready."""
    seen: list[int] = []
    done = threading.Event()
    watcher = threading.Thread(target=watch_ready, args=(http_url, done, seen), daemon=True)
    started = time.monotonic()
    stopper = threading.Thread(target=stop, daemon=True)
    stopper.start()
    watcher.start()
    stopper.join(DEADLINE_S + 10)
    elapsed = time.monotonic() - started
    done.set()
    watcher.join(5)
    return elapsed, seen


def not_ready_once_draining(readiness: list[int]) -> bool:
    """/ready answered 200 until the stop took effect, then only 503 (until the port closed)."""
    return 503 not in readiness or 200 not in readiness[readiness.index(503):]


@settings(max_examples=100, deadline=None, suppress_health_check=HEALTH, phases=PHASES)
@given(stopping=st.sampled_from(["gateway", "router"]), devices=st.integers(1, USERS),
       senders=st.lists(st.integers(0, USERS - 1), max_size=8),
       lazy=st.lists(st.booleans(), min_size=USERS, max_size=USERS), pause=st.floats(0, 0.03))
def test_property_14_graceful_shutdown(setup: Setup, stopping: str, devices: int, senders: list[int],
                                       lazy: list[bool], pause: float) -> None:
    """Feature: im-backend-service, Property 14: Graceful Shutdown

    *For any* running system state, initiating shutdown should result in graceful cleanup
    and resource release: with any number of devices connected (some holding unacked
    events) and sends in flight, a gateway or router asked to stop answers /ready 503 from
    then on and finishes within NJ_SHUTDOWN_DEADLINE_S. The gateway answers every send it
    took (ack or a clean error) before closing each socket with 1001 and releases its
    listeners and its NATS connection; the router answers every send it took, so each send
    is acked or fails cleanly and, resent with its id to the next router, is stored once.
    No acked message is lost (every one stored once; an unanswered send is not stored).
    Requirement R6.5: graceful shutdown with cleanup and resource release.
    """
    if stopping == "gateway":
        gateway_stops(setup, devices, senders, lazy, pause)
    else:
        router_stops(setup, devices, senders, lazy, pause)


def gateway_stops(setup: Setup, devices: int, senders: list[int], lazy: list[bool], pause: float) -> None:
    baseline = gateway_connections(setup.nats)
    config = load({**setup.stack.env, "NJ_GATEWAY_HTTP_PORT": "0", "NJ_GATEWAY_WS_PORT": "0"})
    gateway = ServiceThread(app.main, config, name="gateway-under-test")
    gateway.start()
    http_url, ws_url = gateway.runtime.http_url, gateway.runtime.app.state.ws_url
    example = Example(setup, ws_url, devices, lazy)
    setup.pool.run(example.connect)
    setup.pool.run(example.write, senders)
    time.sleep(pause)
    elapsed, readiness = stop_and_watch(gateway.stop, http_url)

    stopped_cleanly(gateway)
    assert elapsed < DEADLINE_S + 1.0, elapsed
    assert not_ready_once_draining(readiness), readiness
    assert wait_until(example.closed, 5)
    example.check()
    assert refused(port_of(ws_url)) and refused(port_of(http_url))
    assert wait_until(lambda: gateway_connections(setup.nats) == baseline, 5)


def router_stops(setup: Setup, devices: int, senders: list[int], lazy: list[bool], pause: float) -> None:
    example = Example(setup, setup.stack.ws_url, devices, lazy)
    setup.pool.run(example.connect)
    setup.pool.run(example.write, senders)
    time.sleep(pause)
    router = setup.router
    elapsed, readiness = stop_and_watch(router.stop, router.runtime.http_url)
    stopped_cleanly(router)
    assert elapsed < DEADLINE_S + 1.0, elapsed
    assert not_ready_once_draining(readiness), readiness
    assert refused(port_of(router.runtime.http_url))
    setup.router = start_router(setup.stack.env)
    setup.pool.run(example.resend_failed)
    example.check_resent()
    setup.pool.run(example.disconnect)


def stopped_cleanly(service: ServiceThread) -> None:
    assert not service.thread.is_alive()
    assert service.error is None, "".join(traceback.format_exception(service.error))


def test_sigterm_to_a_gateway_process(setup: Setup) -> None:
    """Property 14 with a real SIGTERM: a gateway process with devices and sends in flight
    closes every socket with 1001, answers what it took, drains within the deadline (no
    ``service.drain_deadline_passed``) and exits 0 right after."""
    for round_number in range(3):
        name = f"gw-sigterm-{round_number}"
        api, ws_url = setup.stack.start_gateway(name)
        process = setup.stack.processes[name]
        example = Example(setup, ws_url, USERS, [round_number % 2 == 0] * USERS)
        setup.pool.run(example.connect)
        setup.pool.run(example.write, list(range(8)))
        process.send_signal(signal.SIGTERM)
        elapsed, readiness = stop_and_watch(lambda p=process: p.wait(DEADLINE_S + 10), api)
        assert process.returncode == 0, setup.stack.tail(name)
        assert "service.drain_deadline_passed" not in setup.stack.tail(name, 200)
        assert elapsed < DEADLINE_S + EXIT_S, elapsed
        assert not_ready_once_draining(readiness), readiness
        assert wait_until(example.closed, 5)
        example.check()
        setup.stack.processes.pop(name)
