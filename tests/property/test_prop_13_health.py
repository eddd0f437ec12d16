"""Seed 000 property 13 against the running product: what /health and /ready say.

The five services run once per module as processes, each reaching NATS, MySQL and Redis
through proxies of its own (``tests.faultkit.Proxy``), so an example can put every
service in a state of its own: each dependency up, down (cut and refused) or hung
(nothing flows; NATS only up or down). Probes are cached 50 ms and time out after 0.3 s
(``NJ_HEALTH_*``), so a state shows within a fraction of a second. The expected answer is
what ``libs/health.py`` documents: each dependency ``ok``/``down``; the service ``down``
(503) while a required one is down (NATS everywhere, MySQL everywhere but the router,
which sends without it), ``degraded`` (200) with only optional ones down, ``ok`` (200)
otherwise; ``/health`` 200 at once with the last probes, whatever the state.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.natsd import NatsServer
from tests.faultkit import DOWN, HANG, UP, Proxy
from tests.property.faulty import DEPENDENCIES, HEALTH, PHASES
from tools.stack import SERVICES, Stack, build_stack, running_nats

pytestmark = pytest.mark.timeout(600)
# Redis is optional everywhere: without it a service is degraded; so is MySQL for the router.
REQUIRED = {service: {"nats"} if service == "router" else {"nats", "mysql"} for service in SERVICES}
KNOBS = {"NJ_HEALTH_CACHE_S": "0.05", "NJ_HEALTH_PROBE_TIMEOUT_S": "0.3", "NJ_REDIS_TIMEOUT_S": "0.2",
         "NJ_MYSQL_RETRY_ATTEMPTS": "2", "NJ_MYSQL_RETRY_BASE_MS": "10", "NJ_LOG_LEVEL": "warning"}
State = dict[str, dict[str, str]]  # service -> dependency -> up/down/hang


@dataclass
class Proxied:
    stack: Stack
    proxies: dict[tuple[str, str], Proxy]  # (service, dependency)

    def apply(self, state: State) -> None:
        for (service, dependency), proxy in self.proxies.items():
            wanted = state[service][dependency]
            if proxy.state != wanted:
                getattr(proxy, wanted)()

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.stack.ports[service]}"


def _address(url: str, default_port: int) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@contextlib.contextmanager
def proxied_stack(common_env: Any, nats: NatsServer, mysql_port: int, redis_url: str
                  ) -> Iterator[Proxied]:
    """Every service on proxies of its own to NATS, MySQL and Redis."""
    targets = {"nats": _address(nats.url, 4222), "mysql": ("127.0.0.1", mysql_port),
               "redis": _address(redis_url, 6379)}
    with contextlib.ExitStack() as stop:
        proxies = {(service, dependency): stop.enter_context(Proxy(targets[dependency][1],
                                                                   targets[dependency][0]))
                   for service, dependencies in DEPENDENCIES.items() for dependency in dependencies}
        env = common_env("e2e", NJ_NATS_URL=nats.url, **KNOBS)
        env.pop("NJ_E2E_HTTP_PORT")
        stack = build_stack(env, Path(tempfile.mkdtemp(prefix="nj-health-")))
        stop.callback(shutil.rmtree, stack.log_dir, True)
        stop.callback(stack.stop_all)
        for service in SERVICES:
            port = {d: proxies[(service, d)].port for d in DEPENDENCIES[service]}
            own = {"NJ_NATS_URL": f"nats://127.0.0.1:{port['nats']}",
                   "NJ_REDIS_URL": f"redis://127.0.0.1:{port['redis']}/0"}
            if "mysql" in port:
                own["NJ_MYSQL_HOST"], own["NJ_MYSQL_PORT"] = "127.0.0.1", str(port["mysql"])
            stack.start(service, env=own)
        for service in SERVICES:
            stack.wait_ready(service)
        yield Proxied(stack, proxies)


@pytest.fixture(scope="module")
def proxied(common_env, mysql_config, redis_url) -> Iterator[Proxied]:
    with running_nats("nj-health-nats-") as nats, \
            proxied_stack(common_env, nats, mysql_config.port, redis_url) as running:
        yield running
        running.apply({s: dict.fromkeys(d, UP) for s, d in DEPENDENCIES.items()})


def expected(service: str, state: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """(status code, body without "service") that libs/health.py documents for ``state``."""
    checks = {dependency: "ok" if how == UP else "down" for dependency, how in state.items()}
    if any(checks[d] == "down" for d in REQUIRED[service] & set(checks)):
        return 503, {"status": "down", "checks": checks}
    return 200, {"status": "ok" if all(v == "ok" for v in checks.values()) else "degraded",
                 "checks": checks}


def observed(http: httpx.Client, url: str) -> tuple[int, dict[str, Any]]:
    answer = http.get(f"{url}/ready", timeout=5)
    body = answer.json()
    return answer.status_code, {"status": body["status"], "checks": body["checks"]}


def settled(http: httpx.Client, url: str, want: tuple[int, dict[str, Any]], timeout: float = 10
            ) -> tuple[int, dict[str, Any]]:
    """What /ready answers once it answers ``want``, or at the timeout."""
    deadline = time.monotonic() + timeout
    while (got := observed(http, url)) != want and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def liveness(http: httpx.Client, url: str, service: str) -> dict[str, Any]:
    """/health: 200 at once, whatever the dependencies do (it never waits on a probe)."""
    started = time.monotonic()
    answer = http.get(f"{url}/health", timeout=5)
    assert answer.status_code == 200 and time.monotonic() - started < 1.0, answer.text
    body = answer.json()
    assert body["service"] == service.replace("_", "-"), body
    return {"status": body["status"], "checks": body["checks"]}


def states(dependencies: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    how = {"nats": st.sampled_from([UP, UP, DOWN]), "mysql": st.sampled_from([UP, UP, DOWN, HANG]),
           "redis": st.sampled_from([UP, UP, DOWN, HANG])}
    return st.fixed_dictionaries({d: how[d] for d in dependencies})


system_states = st.fixed_dictionaries({s: states(d) for s, d in DEPENDENCIES.items()})


@settings(max_examples=100, deadline=None, suppress_health_check=HEALTH, phases=PHASES)
@given(state=system_states)
def test_property_13_health_check_availability(proxied: Proxied, state: State) -> None:
    """Feature: im-backend-service, Property 13: Health Check Availability

    *For any* system state, health check endpoints should return appropriate status
    information for monitoring: whichever of its NATS, MySQL and Redis each service finds
    down or hung, its /ready soon reports each dependency's state and its own (down with
    503 when a required dependency is down, degraded with 200 when only optional ones are
    — Redis, and MySQL for the router —, ok with 200 otherwise), and its /health answers 200 at once with the same last-known state.
    Requirement R6.3: health check endpoints for monitoring.
    """
    proxied.apply(state)
    with httpx.Client() as http:
        for service, dependencies in state.items():
            url, want = proxied.url(service), expected(service, dependencies)
            got = settled(http, url, want)
            assert got == want, (service, dependencies, got, want)
            assert liveness(http, url, service) == want[1]
