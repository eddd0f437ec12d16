"""The five services as real processes, for end-to-end and fault tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from libs.natsd import NatsServer, free_port, new_passwords, start_nats

SERVICES = ("auth", "router", "history", "delivery_retry", "gateway")


@dataclass
class Stack:
    env: dict[str, str]
    log_dir: Path
    ports: dict[str, int]
    ws_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    nats_users: dict[str, str] = field(default_factory=dict)  # user -> password; empty: no auth

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    def start(self, service: str, *, name: str | None = None, env: dict[str, str] | None = None) -> None:
        """Start ``services.<service>`` as process ``name`` (default: the service's name)."""
        name = name or service
        log = open(self.log_dir / f"{name}.out", "ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env={**self.env, **self.credentials(service), **(env or {})},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def credentials(self, service: str) -> dict[str, str]:
        """The service's own NATS user, when the nats-server enforces users."""
        user = service.replace("_", "-")
        if user not in self.nats_users:
            return {}
        return {"NJ_NATS_USER": user, "NJ_NATS_PASSWORD": self.nats_users[user]}

    def start_gateway(self, name: str) -> tuple[str, str]:
        """Another gateway process on ports of its own; returns (api base URL, ws URL)."""
        http_port, ws_port = free_port(), free_port()
        self.ports[name] = http_port
        self.start("gateway", name=name, env={"NJ_GATEWAY_HTTP_PORT": str(http_port),
                                              "NJ_GATEWAY_WS_PORT": str(ws_port)})
        self.wait_ready(name)
        return f"http://127.0.0.1:{http_port}", f"ws://127.0.0.1:{ws_port}/ws"

    def start_replica(self, service: str, name: str) -> None:
        """Another process of ``service`` (sharing its queue groups) on an HTTP port of its own."""
        self.ports[name] = free_port()
        self.start(service, name=name, env={f"NJ_{service.upper()}_HTTP_PORT": str(self.ports[name])})
        self.wait_ready(name)

    def wait_ready(self, service: str, timeout: float = 30.0) -> None:
        url = f"http://127.0.0.1:{self.ports[service]}/ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes[service].poll() is not None:
                raise RuntimeError(f"{service} exited: {self.tail(service)}")
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{service} not ready within {timeout}s: {self.tail(service)}")

    def tail(self, service: str, lines: int = 30) -> str:
        path = self.log_dir / f"{service}.out"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, service: str, kill: bool = False) -> None:
        process = self.processes.pop(service, None)
        if process and process.poll() is None:
            (process.kill if kill else process.terminate)()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        """Extra replicas first, then the services in reverse start order."""
        for name in [n for n in self.processes if n not in SERVICES]:
            self.stop(name)
        for service in reversed(SERVICES):
            self.stop(service)


def build_stack(base_env: dict[str, str], log_dir: Path,
                nats_users: dict[str, str] | None = None) -> Stack:
    """``nats_users`` (those of a ``running_nats(users=True)``): each service connects as
    its own user."""
    ports = {s: free_port() for s in SERVICES}
    env = {**os.environ, **base_env, "NJ_AUTH_DEV_GENERATE_KEY": "true",
           "NJ_GATEWAY_WS_PORT": str(free_port())}
    for service, port in ports.items():
        env[f"NJ_{service.upper()}_HTTP_PORT"] = str(port)
    return Stack(env, log_dir, ports, int(env["NJ_GATEWAY_WS_PORT"]), nats_users=nats_users or {})


def start_stack(stack: Stack) -> Stack:
    for service in SERVICES:
        stack.start(service)
    for service in SERVICES:
        stack.wait_ready(service)
    return stack


@contextlib.contextmanager
def running_nats(prefix: str = "nj-nats-", *, users: bool = False) -> Iterator[NatsServer]:
    """Our own nats-server on a free port with a temporary store, removed afterwards.

    ``users``: it admits only a user per service (permissions of proto/subjects.yaml) and
    ``admin``, with fresh passwords in ``server.users``.
    """
    store = Path(tempfile.mkdtemp(prefix=prefix))
    server = start_nats(store, log_file=store / "nats.log",
                        users=new_passwords() if users else None)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)


@contextlib.contextmanager
def isolated_stack(extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """The five services on a nats-server, database and Redis prefix of their own.

    For benchmarks and tools: MySQL/Redis come from NJ_MYSQL_* / NJ_REDIS_URL (defaults
    127.0.0.1); the database and the keys are removed afterwards.
    """
    import secrets

    import pymysql
    import redis

    tag = secrets.token_hex(4)
    env = {"NJ_MYSQL_HOST": os.environ.get("NJ_MYSQL_HOST", "127.0.0.1"),
           "NJ_MYSQL_PORT": os.environ.get("NJ_MYSQL_PORT", "3306"),
           "NJ_MYSQL_USER": os.environ.get("NJ_MYSQL_USER", "root"),
           "NJ_MYSQL_PASSWORD": os.environ.get("NJ_MYSQL_PASSWORD", ""),
           "NJ_MYSQL_DATABASE": f"nj_bench_{tag}", "NJ_REDIS_PREFIX": f"njbench:{tag}:",
           "NJ_REDIS_URL": os.environ.get("NJ_REDIS_URL", "redis://127.0.0.1:6379/0"),
           "NJ_LOG_LEVEL": "warning", "NJ_AUTH_REGISTER_PER_IP_PER_HOUR": "1000000",
           "NJ_AUTH_LOGIN_IP_FREE_ATTEMPTS": "100000", **(extra_env or {})}
    log_dir = Path(tempfile.mkdtemp(prefix="nj-stack-"))
    with running_nats("nj-stack-nats-") as nats:
        stack = build_stack({**env, "NJ_NATS_URL": nats.url}, log_dir)
        try:
            yield start_stack(stack)
        finally:
            stack.stop_all()
            conn = pymysql.connect(host=env["NJ_MYSQL_HOST"], port=int(env["NJ_MYSQL_PORT"]),
                                   user=env["NJ_MYSQL_USER"], password=env["NJ_MYSQL_PASSWORD"])
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{env['NJ_MYSQL_DATABASE']}`")
            conn.close()
            client = redis.Redis.from_url(env["NJ_REDIS_URL"])
            for key in client.scan_iter(match=f"{env['NJ_REDIS_PREFIX']}*", count=1000):
                client.delete(key)
            client.close()
            if os.environ.get("NJ_KEEP_LOGS"):
                print(f"service logs kept in {log_dir}")
            else:
                shutil.rmtree(log_dir, ignore_errors=True)
