"""The whole product with MySQL and Redis behind switchable proxies, for the resilience
properties (seed 000, properties 11-14).

Every service reaches MySQL and Redis through a ``tests.faultkit.Proxy`` of the test's
own, so an example can take either away (``down``: connections cut and refused; ``hang``:
nothing flows) and bring it back, while the machine's servers keep running. The stack,
its own nats-server and a pool of connected phones start once per module.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio
from hypothesis import HealthCheck, Phase

from libs.config import MySQLConfig
from tests.checker import Expectations, Recorder, StoredEvent, check, wait_stored
from tests.faultkit import Proxy
from tests.property.phones import STORED, Phone, Phones
from tests.stacks import running_stack
from tools.stack import Stack, running_nats

# Examples change a live stack, so a failing one is not replayed alone: shrinking it would
# take minutes and shrink towards a different state. Hypothesis reports the example as drawn.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

# Services whose /ready a test looks at: (process name in the stack, dependencies it probes).
DEPENDENCIES = {"auth": ("nats", "mysql", "redis"), "router": ("nats", "mysql", "redis"),
                "history": ("nats", "mysql", "redis"), "delivery_retry": ("nats", "mysql", "redis"),
                "gateway": ("nats", "redis")}


@dataclass
class FaultyStack:
    stack: Stack
    phones: Phones
    mysql: Proxy
    redis: Proxy

    def proxy(self, dependency: str) -> Proxy:
        return {"mysql": self.mysql, "redis": self.redis}[dependency]

    def heal(self) -> None:
        self.mysql.up()
        self.redis.up()

    def ops_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.stack.ports[service]}"

    def log_size(self, service: str) -> int:
        path = self.log_path(service)
        return path.stat().st_size if path.exists() else 0

    def log_path(self, service: str) -> Path:
        return self.stack.log_dir / f"{service}.out"

    def log_lines(self, service: str, since: int, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines ``service`` wrote after byte offset ``since`` (of one event)."""
        with open(self.log_path(service), "rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
        lines = []
        for raw in text.splitlines():
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if isinstance(line, dict) and (event is None or line.get("event") == event):
                    lines.append(line)
        return lines


class ChatRun:
    """One group chat of every phone of a ``FaultyStack``, and what was sent into it."""

    def __init__(self, faulty: FaultyStack, mysql: MySQLConfig):
        self.faulty, self.mysql = faulty, mysql
        self.recorder = Recorder()
        self.phones: list[Phone] = faulty.phones.phones
        for phone in self.phones:
            phone.recorder = self.recorder
        self.chat_id = faulty.phones.run(faulty.phones.group, self.phones[0], self.phones[1:])
        self.last_seq = 1
        self.send(self.phones[0], 1)  # warms the member cache and reserves a seq block

    def send(self, phone: Phone, count: int) -> list[dict[str, Any] | None]:
        """``count`` texts one after the other; the answer to each (None: none came)."""
        async def go() -> list[dict[str, Any] | None]:
            return [await phone.send_text(self.chat_id, f"m{secrets.token_hex(3)}", timeout=10)
                    for _ in range(count)]
        answers = self.faulty.phones.run(go)
        self.last_seq = max([self.last_seq, *(a["seq"] for a in answers if a and "seq" in a)])
        return answers

    def holds(self, phone: Phone, seq: int) -> bool:
        """``phone`` was sent the chat's event ``seq`` or above (its own: the message_ack)."""
        return any(f.get("chat_id") == self.chat_id and f.get("seq", 0) >= seq
                   and f["type"] in (*STORED, "message_ack") for f in phone.frames)

    def check_stored(self, connected: list[Phone] | None = None) -> list[StoredEvent]:
        """Wait until MySQL holds every seq and the ``connected`` phones (default: all) hold
        the newest; then the checker: nothing lost, nothing twice, in order, as sent."""
        connected = self.phones if connected is None else connected
        stored = trio.run(partial(wait_stored, self.mysql, {self.chat_id: self.last_seq},
                                  interval=0.02))
        top = max((event.seq for event in stored), default=0)
        assert wait_until(lambda: all(self.holds(p, top) for p in connected), 10), \
            [(p.user.username, p.ws is not None) for p in connected if not self.holds(p, top)]
        devices = [p.device for p in connected]
        check(self.recorder, stored, Expectations(complete=devices, chats=[self.chat_id])).assert_ok()
        assert [e.seq for e in stored] == list(range(1, top + 1))  # each seq once, dense
        return stored


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll ``check`` until it returns something true; that value, or the last one at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def ready(http: httpx.Client, url: str) -> tuple[int, dict[str, Any]]:
    answer = http.get(f"{url}/ready", timeout=5)
    return answer.status_code, answer.json()


@contextlib.contextmanager
def faulty_stack(common_env: Any, mysql_config: MySQLConfig, redis_url: str, phones: int,
                 **env: str) -> Iterator[FaultyStack]:
    """The five services behind a MySQL and a Redis proxy, ``phones`` connected phones."""
    redis_at = urllib.parse.urlsplit(redis_url)
    with Proxy(mysql_config.port, mysql_config.host) as mysql, \
            Proxy(redis_at.port or 6379, redis_at.hostname or "127.0.0.1") as redis, \
            running_nats("nj-faulty-nats-") as nats, \
            running_stack(common_env, nats, NJ_MYSQL_HOST="127.0.0.1", NJ_MYSQL_PORT=str(mysql.port),
                          NJ_REDIS_URL=f"redis://127.0.0.1:{redis.port}{redis_at.path or '/0'}",
                          **env) as stack:
        pool = Phones(stack.api, stack.ws_url, phones).start()
        try:
            yield FaultyStack(stack, pool, mysql, redis)
        finally:
            mysql.up()
            redis.up()
            pool.stop()
