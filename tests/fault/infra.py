"""The stack under test and the dependencies a fault may take away.

The five services run against a nats-server, a redis-server and a MySQL proxy that are
all the test's own: killing or cutting them touches nothing else on the machine. MySQL
itself is the shared server, reached through ``tests.faultkit.Proxy``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libs.config import MySQLConfig
from tests.faultkit import Proxy, RedisServer, RestartableNats
from tools.stack import SERVICES, Stack, start_stack

# Knobs for a test run: presence that notices a dead gateway quickly, and a short void grace
# with a publish deadline no longer than it (the documented rule: a send still in flight
# lands before the void of its number, so the void is the one de-duplicated). history's
# hole filler waits longer than both together before voiding a number a killed router took.
STACK_ENV = {"NJ_LOG_LEVEL": "warning", "NJ_PRESENCE_TTL_S": "3",
             "NJ_GATEWAY_CATCH_UP_WAIT_S": "15", "NJ_ROUTER_VOID_GRACE_S": "3",
             "NJ_ROUTER_PUBLISH_DEADLINE_S": "3", "NJ_HISTORY_HOLE_AFTER_S": "8",
             # A failover between Redis and MySQL skips the rest of the reserved block (voids
             # it); with the default 1000 a Redis outage under load voids thousands of numbers
             # per chat (see docs/reliability.md). Smaller blocks keep the test about the rest.
             "NJ_ROUTER_SEQ_BLOCK": "50"}


@dataclass
class FaultStack:
    stack: Stack
    nats: RestartableNats
    redis: RedisServer
    mysql: Proxy
    mysql_config: MySQLConfig  # direct, not through the proxy: what the checker reads
    restarts: dict[str, int] = field(default_factory=dict)

    # ---- faults ---------------------------------------------------------------------------
    def kill(self, service: str) -> None:
        """kill -9 of one service process (by its pid)."""
        process = self.stack.processes[service]
        process.kill()
        process.wait(10)

    def restart(self, service: str, timeout: float = 120) -> None:
        self.stack.start(service)
        self.restarts[service] = self.restarts.get(service, 0) + 1
        self.stack.wait_ready(service, timeout)

    # ---- observing ------------------------------------------------------------------------
    def ready(self, service: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of the service's /ready; (0, {}) when it does not answer."""
        url = f"http://127.0.0.1:{self.stack.ports[service]}/ready"
        try:
            with urllib.request.urlopen(url, timeout=3) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError):
            return 0, {}

    def metric(self, service: str, name: str) -> float | None:
        """One unlabelled value from the service's /metrics (None if absent or unreachable)."""
        url = f"http://127.0.0.1:{self.stack.ports[service]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=3) as answer:
                text = answer.read().decode()
        except (urllib.error.URLError, OSError):
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def exited(self) -> list[str]:
        return [name for name, p in self.stack.processes.items() if p.poll() is not None]

    def log(self, service: str) -> str:
        path: Path = self.stack.log_dir / f"{service}.out"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- back to normal -------------------------------------------------------------------
    def heal(self) -> None:
        """Whatever a fault left behind: dependencies up, every service running and ready."""
        self.mysql.up()
        if self.redis.process is None or self.redis.process.poll() is not None:
            self.redis.start()
        if not self.nats.running:
            self.nats.start()
        for service in self.exited():
            self.restart(service)
        for service in SERVICES:
            self.stack.wait_ready(service, 120)


def start_fault_stack(stack: Stack, nats: RestartableNats, redis: RedisServer, mysql: Proxy,
                      mysql_config: MySQLConfig) -> FaultStack:
    return FaultStack(start_stack(stack), nats, redis, mysql, mysql_config)
