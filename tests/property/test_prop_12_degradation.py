"""Seed 000 property 12 against the running product: Redis goes away and comes back.

The five services run once per module as processes with Redis behind a
``tests.faultkit.Proxy``; each example switches it down (connections cut and refused) or
hung (nothing flows), uses the product meanwhile, and brings it back. Redis calls time out
after 0.1 s and health probes are cached for 50 ms (``NJ_REDIS_TIMEOUT_S``,
``NJ_HEALTH_*``), so a hung Redis costs an example fractions of a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.faultkit import DOWN, HANG
from tests.property.faulty import (
    DEPENDENCIES,
    HEALTH,
    PHASES,
    ChatRun,
    faulty_stack,
    ready,
    wait_until,
)
from tests.property.phones import Phone

pytestmark = pytest.mark.timeout(600)
KNOBS = {"NJ_REDIS_TIMEOUT_S": "0.1", "NJ_HEALTH_CACHE_S": "0.05", "NJ_HEALTH_PROBE_TIMEOUT_S": "0.3",
         # One number reserved in MySQL at a time: a switch to MySQL's counter skips none.
         "NJ_ROUTER_SEQ_BLOCK": "1", "NJ_ROUTER_VOID_GRACE_S": "0.3",
         "NJ_HISTORY_BATCH_WAIT_MS": "5", "NJ_LOG_LEVEL": "warning"}


@pytest.fixture(scope="module")
def run(common_env, mysql_config, redis_url) -> Iterator[ChatRun]:
    with faulty_stack(common_env, mysql_config, redis_url, 4, **KNOBS) as faulty:
        yield ChatRun(faulty, mysql_config)


def reconnect(run: ChatRun, phone: Phone) -> None:
    """A new socket with the token the device already holds: the gateway checks its
    signature and asks auth whether the session is live (auth answers from MySQL)."""
    async def go() -> None:
        await phone.disconnect()
        await phone.connect(run.faulty.phones.nursery)
    run.faulty.phones.run(go)


def history_page(run: ChatRun, http: httpx.Client, phone: Phone) -> dict[str, Any]:
    answer = http.get(f"{run.faulty.stack.api}/api/v1/chats/{run.chat_id}/messages",
                      params={"limit": 5}, headers=phone.user.auth, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def online(run: ChatRun, http: httpx.Client, phone: Phone) -> bool:
    answer = http.get(f"{run.faulty.stack.api}/api/v1/users/{phone.user.user_id}/presence",
                      headers=phone.user.auth, timeout=10)
    return answer.status_code == 200 and answer.json()["status"] == "online"


def degraded_everywhere(run: ChatRun, http: httpx.Client) -> bool:
    """Every service answers /ready 200 and reports Redis down, itself degraded."""
    for service in DEPENDENCIES:
        status, body = ready(http, run.faulty.ops_url(service))
        assert status == 200, (service, body)  # Redis is optional: ready all along
        if body["status"] != "degraded" or body["checks"]["redis"] != "down":
            return False
    return True


@settings(max_examples=100, deadline=None, suppress_health_check=HEALTH, phases=PHASES)
@given(outage=st.sampled_from([DOWN, HANG]), sends=st.integers(1, 3), sender=st.integers(0, 3),
       reconnecting=st.booleans())
def test_property_12_graceful_degradation(run: ChatRun, outage: str, sends: int, sender: int,
                                          reconnecting: bool) -> None:
    """Feature: im-backend-service, Property 12: Graceful Degradation

    *For any* Redis unavailability scenario, the system should continue operating with
    degraded performance rather than failing completely: while Redis is down or hung, a
    device reconnects with the token it holds, every send is acknowledged with the chat's
    next numbers (router's counter from MySQL), every online member receives it (fan-out
    to every gateway), history pages come from MySQL, and every service's /ready stays 200
    reporting Redis down and itself degraded; once Redis is back, every connected device
    is online again within seconds, sends go on and reach everyone live, and MySQL holds
    every event once, densely numbered.
    Requirement R6.2: without Redis the system runs on MySQL alone, degraded.
    """
    faulty, phones = run.faulty, run.phones
    before = run.last_seq
    getattr(faulty.redis, outage)()
    try:
        with httpx.Client() as http:
            if reconnecting:
                reconnect(run, phones[3])
            answers = run.send(phones[sender], sends)
            assert all(a is not None and a["type"] == "message_ack" for a in answers), answers
            seqs = [a["seq"] for a in answers if a]
            assert seqs == sorted(set(seqs)) and seqs[0] > before
            run.check_stored()
            assert history_page(run, http, phones[0])["events"][-1]["seq"] == run.last_seq
            assert wait_until(lambda: degraded_everywhere(run, http), 5)
    finally:
        faulty.redis.up()
    with httpx.Client() as http:  # recovered: every connected device is online again
        assert wait_until(lambda: all(online(run, http, phone) for phone in phones), 5)
    after = run.send(phones[(sender + 1) % len(phones)], 1)
    assert after[0] is not None and after[0]["type"] == "message_ack", after
    run.check_stored()


def test_ready_again_once_redis_is_back(run: ChatRun) -> None:
    """After the examples: with Redis up every service is ready and ok."""
    with httpx.Client() as http:
        def all_ok() -> bool:
            answers = [ready(http, run.faulty.ops_url(service)) for service in DEPENDENCIES]
            return all(status == 200 and body["status"] == "ok" for status, body in answers)
        assert wait_until(all_ok, 10)
