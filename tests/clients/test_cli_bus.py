"""`natterjack bus tail` and `natterjack bus streams` against the running product, on a
nats-server that admits only per-service users and an admin: tail shows what a real send
puts on the bus (subject, Nj-Trace-Id, the JSON body), streams shows IM_MESSAGES and the
lag of its consumers (which grows while history is down and drains when it is back), and
every failure is one line with the CLI's exit code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import trio
from natterjack_client import Client
from natterjack_client.cli import main

from libs.natsd import ADMIN, NatsServer, free_port, nats_server_binary
from tests.stacks import running_stack
from tools.stack import Stack, running_nats

from .conftest import PASSWORD, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]
Run = Callable[..., tuple[int, str, str]]
CONSUMERS = {"history", "delivery-retry"}


@pytest.fixture(scope="module")
def users_nats() -> Iterator[NatsServer]:
    with running_nats("nj-bus-nats-", users=True) as server:
        yield server


@pytest.fixture(scope="module")
def stack(common_env, users_nats: NatsServer) -> Iterator[Stack]:
    with running_stack(common_env, users_nats, NJ_LOG_LEVEL="warning") as running:
        yield running


@pytest.fixture
def bus(users_nats: NatsServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Run:
    """``bus(*args)``: exit code, stdout, stderr of ``natterjack bus ...`` run in this process,
    as the admin user given through the environment."""
    for name, value in _admin_env(users_nats).items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["bus", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_tail_shows_a_message_sent_through_the_product(stack: Stack, users_nats: NatsServer):
    sender, chat_id = trio.run(_direct_chat, stack)
    tail = _start_tail(users_nats, "bus", "tail", f"im.msg.{chat_id}", "--count", "1",
                       "--timeout", "60")
    text = f"hello bus {secrets.token_hex(4)}"
    ack = trio.run(_send, stack, sender, chat_id, text)
    out, err = tail.communicate(timeout=90)
    assert tail.returncode == 0, err
    first, *rest = out.splitlines()
    assert first.startswith(f"[#1] im.msg.{chat_id}  reply _INBOX.")  # a JetStream publish
    headers = dict(line.strip().split(": ", 1) for line in rest[:rest.index("  {")])
    assert headers["Content-Type"] == "application/json" and headers["Nj-Trace-Id"]
    assert headers["Nats-Msg-Id"] == f"{chat_id}:{ack['seq']}"
    assert "  {" in rest and f'    "content": "{text}",' in rest  # pretty JSON, indented


def test_tail_of_everything_follows_one_trace_id(stack: Stack, users_nats: NatsServer):
    """The send request to router and the stream event it stores carry one Nj-Trace-Id."""
    sender, chat_id = trio.run(_direct_chat, stack)
    password = users_nats.users[ADMIN]
    tail = _start_tail(users_nats, "--json", "bus", "tail", "im.>", "--timeout", "60",
                       "--user", ADMIN, "--password", password, env={"NJ_NATS_PASSWORD": "wrong"})
    text = f"traced {secrets.token_hex(4)}"
    trio.run(_send, stack, sender, chat_id, text)
    seen = _read_until(tail, lambda m: m["subject"] == f"im.msg.{chat_id}")
    tail.terminate()
    tail.wait(timeout=10)
    stored = seen[-1]
    assert stored["data"]["content"] == text and stored["reply"] is not None  # a JetStream publish
    trace = stored["headers"]["Nj-Trace-Id"]
    request = [m for m in seen if m["subject"] == "im.router.send"
               and m["data"].get("chat_id") == chat_id]
    assert request and request[-1]["headers"]["Nj-Trace-Id"] == trace
    assert request[-1]["reply"].startswith("_INBOX.")


def test_streams_shows_the_stream_and_the_lag_of_its_consumers(stack: Stack, bus: Run):
    sender, chat_id = trio.run(_direct_chat, stack)
    trio.run(_send, stack, sender, chat_id, "before the pause")
    stream = _stream(bus)
    assert stream["subjects"] == ["im.msg.>"] and stream["messages"] >= 2
    assert stream["last_seq"] >= stream["first_seq"] >= 1 and stream["bytes"] > 0
    assert {c["consumer"] for c in stream["consumers"]} == CONSUMERS
    stack.stop("history")
    try:
        for n in range(3):
            trio.run(_send, stack, sender, chat_id, f"while history is down {n}")
        lag = _consumer(_stream(bus), "history")
        assert lag["num_pending"] + lag["num_ack_pending"] >= 3, lag
    finally:
        stack.start("history")
        stack.wait_ready("history")
    drained = _wait_for(lambda: _consumer(_stream(bus), "history"),
                        lambda c: c["num_pending"] == 0 and c["num_ack_pending"] == 0)
    assert drained["ack_floor_seq"] == _stream(bus)["last_seq"]
    code, out, _ = bus("streams")
    assert code == 0 and out.startswith("stream IM_MESSAGES  subjects im.msg.>  messages ")
    assert "num_pending  num_ack_pending  num_redelivered" in out and "history " in out


def test_errors_are_one_line_with_documented_exit_codes(stack: Stack, users_nats: NatsServer,
                                                        bus: Run):
    code, _, err = bus("streams", "--password", "not-the-password")
    assert (code, err.count("\n")) == (3, 1) and "authorization violation" in err
    assert "natterjack login" not in err
    # A service's user may not read the whole bus (proto/subjects.yaml permissions).
    code, _, err = bus("tail", "im.>", "--user", "gateway", "--password",
                       users_nats.users["gateway"], "--timeout", "20")
    assert (code, err.count("\n")) == (2, 2) and "permissions violation" in err  # + subscribed
    code, _, err = bus("streams", "NO_SUCH_STREAM")
    assert (code, err.count("\n")) == (2, 1) and "code 4004" in err
    code, _, err = bus("streams", "--server", "nats://127.0.0.1:1")
    assert (code, err.count("\n")) == (4, 1) and "cannot connect to NATS" in err
    assert bus("tail", "im.>", "--count", "0")[0] == 1
    assert bus("tail", "im. >")[0] == 1


def test_tail_ends_after_its_timeout(bus: Run):
    started = time.monotonic()
    code, out, err = bus("tail", "im.nothing.here", "--timeout", "0.5")
    assert code == 0 and out == "" and "subscribed to 'im.nothing.here'" in err
    assert time.monotonic() - started < 10


def _admin_env(server: NatsServer) -> dict[str, str]:
    return {"NJ_NATS_URL": server.url, "NJ_NATS_USER": ADMIN,
            "NJ_NATS_PASSWORD": server.users[ADMIN]}


def _start_tail(server: NatsServer, *args: str, env: dict[str, str] | None = None
                ) -> subprocess.Popen[str]:
    """The CLI as a process of its own, returned once it is subscribed."""
    environ = {**os.environ, **_admin_env(server), **(env or {})}
    process = subprocess.Popen([sys.executable, "-m", "natterjack_client.cli", *args],
                               env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stderr is not None
    line = process.stderr.readline()  # the process ends within its --timeout in any case
    assert "subscribed to" in line, line + process.stderr.read()
    return process


def _read_until(process: subprocess.Popen[str], done: Callable[[dict[str, Any]], bool]
                ) -> list[dict[str, Any]]:
    """JSON lines of a --json tail up to the first one ``done`` accepts."""
    assert process.stdout is not None
    seen: list[dict[str, Any]] = []
    for line in process.stdout:  # ends at the tail's --timeout at the latest
        seen.append(json.loads(line))
        if done(seen[-1]):
            return seen
    raise AssertionError(f"not seen within the timeout; saw {[m['subject'] for m in seen]}")


def _stream(bus: Run) -> dict[str, Any]:
    code, out, err = bus("streams", "IM_MESSAGES", "--json")
    assert code == 0, err
    [stream] = json.loads(out)["streams"]
    assert stream["stream"] == "IM_MESSAGES"
    return dict(stream)


def _consumer(stream: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(next(c for c in stream["consumers"] if c["consumer"] == name))


def _wait_for(read: Callable[[], dict[str, Any]], good: Callable[[dict[str, Any]], bool],
              timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not good(value := read()):
        assert time.monotonic() < deadline, value
        time.sleep(0.2)
    return value


async def _direct_chat(stack: Stack) -> tuple[str, str]:
    """(username of its creator, chat_id) of a new direct chat between two new users."""
    async with Client(stack.api) as ann, Client(stack.api) as bob:
        names = unique("ann"), unique("bob")
        await ann.register(names[0], PASSWORD)
        bob_id = await bob.register(names[1], PASSWORD)
        await ann.login(names[0], PASSWORD)
        chat = await ann.create_chat([bob_id], type="direct")
        return names[0], chat.chat_id


async def _send(stack: Stack, username: str, chat_id: str, text: str) -> dict[str, Any]:
    """Send as ``username`` over a WebSocket; returns the message_ack."""
    async with Client(stack.api) as client:
        await client.login(username, PASSWORD)
        async with client.connect(receive_events=False) as session:
            ack = await session.send_message(chat_id, text)
    return dict(ack.raw)


def test_the_documented_ops_user_reads_the_bus_and_nothing_more(tmp_path: Path):
    """The read-only `ops` user of docs/operations.md: streams and tail work, and it may not
    publish what a service would act on."""
    port, password = free_port(), "nj" + secrets.token_hex(8)
    conf = tmp_path / "nats.conf"
    conf.write_text(f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
                    "authorization { users: [ { user: admin, password: $NATS_PASSWORD_OPS }\n"
                    f"{_documented_ops_user()}\n] }}\n")
    server = subprocess.Popen([nats_server_binary(), "-c", str(conf)],
                              env={**os.environ, "NATS_PASSWORD_OPS": password},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"nats://127.0.0.1:{port}"
        _wait_listening(port, server)
        asyncio.run(_admin_creates_the_stream(url, password))
        env = {**os.environ, "NJ_NATS_URL": url, "NJ_NATS_USER": "ops",
               "NJ_NATS_PASSWORD": password}
        streams = subprocess.run([sys.executable, "-m", "natterjack_client.cli", "--json", "bus",
                                  "streams"], env=env, capture_output=True, text=True, timeout=30)
        assert streams.returncode == 0, streams.stderr
        [stream] = json.loads(streams.stdout)["streams"]
        assert stream["stream"] == "IM_MESSAGES" and stream["consumers"][0]["num_pending"] == 1
        assert asyncio.run(_publish_refused(url, password))
    finally:
        server.terminate()
        server.wait(timeout=10)


def _documented_ops_user() -> str:
    guide = (ROOT / "docs" / "operations.md").read_text()
    block = re.search(r"^```\n(\{\n  user: ops\n.*?)^```", guide, re.MULTILINE | re.DOTALL)
    assert block, "docs/operations.md lost its ops user"
    return block.group(1)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"nats-server did not start (exit {process.poll()})")


async def _admin_creates_the_stream(url: str, password: str) -> None:
    nc = await nats.connect(url, user="admin", password=password)
    js = nc.jetstream()
    await js.add_stream(name="IM_MESSAGES", subjects=["im.msg.>"])
    await js.add_consumer("IM_MESSAGES", durable_name="history", ack_policy="explicit")
    await js.publish("im.msg.c1", b'{"type": "new_message"}')
    await nc.close()


async def _publish_refused(url: str, password: str) -> bool:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(url, user="ops", password=password, error_cb=on_error)
    await nc.publish("im.router.send", b"{}")
    await nc.flush()
    await asyncio.sleep(0.2)
    await nc.close()
    return any("permissions violation" in str(e).lower() for e in errors)
