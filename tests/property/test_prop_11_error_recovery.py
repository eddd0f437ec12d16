"""Seed 000 property 11 against the running product: MySQL goes away and comes back.

The five services run once per module as processes (tools.stack) with MySQL behind a
``tests.faultkit.Proxy``; each example switches it down (connections cut and refused) or
hung (nothing flows) for a drawn while, sends messages meanwhile, and brings it back.
MySQL's retry knobs are set to milliseconds through the environment
(``NJ_MYSQL_RETRY_*``, ``NJ_HISTORY_RETRY_*``) so the back-off runs many rounds per example.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.errors import UNAVAILABLE
from tests.checker import fetch_stored
from tests.faultkit import DOWN, HANG
from tests.property.faulty import HEALTH, PHASES, ChatRun, faulty_stack, wait_until

pytestmark = pytest.mark.timeout(600)
RETRY_BASE_MS, RETRY_MAX_MS = 20, 160
KNOBS = {"NJ_MYSQL_RETRY_ATTEMPTS": "3", "NJ_MYSQL_RETRY_BASE_MS": "5",
         "NJ_HISTORY_RETRY_BASE_MS": str(RETRY_BASE_MS), "NJ_HISTORY_RETRY_MAX_MS": str(RETRY_MAX_MS),
         "NJ_HISTORY_BATCH_WAIT_MS": "5", "NJ_ROUTER_SEQ_BLOCK": "100000",
         "NJ_LOG_LEVEL": "info"}


@pytest.fixture(scope="module")
def run(common_env, mysql_config, redis_url) -> Iterator[ChatRun]:
    with faulty_stack(common_env, mysql_config, redis_url, 3, **KNOBS) as faulty:
        yield ChatRun(faulty, mysql_config)


def mysql_needing_request(run: ChatRun, http: httpx.Client) -> None:
    """A request that only MySQL can answer gets a prompt, clean 5003, never a 5000."""
    started = time.monotonic()
    answer = http.get(f"{run.faulty.stack.api}/api/v1/chats", headers=run.phones[0].user.auth)
    assert answer.status_code == 503 and answer.json()["error"]["code"] == UNAVAILABLE, answer.text
    assert time.monotonic() - started < 3


def check_backoff(lines: list[dict[str, Any]], outage: str) -> None:
    """The writer's failures: numbered 1, 2, … per batch, each naming the error and the
    doubling wait (capped) that it then really waited before the next try."""
    runs: list[list[dict[str, Any]]] = []
    for line in lines:
        if line["attempt"] == 1:
            runs.append([])
        assert runs, f"a retry series must start at attempt 1: {line}"
        runs[-1].append(line)
    for series in runs:
        for number, line in enumerate(series, start=1):
            assert line["attempt"] == number
            assert line["retry_in"] == pytest.approx(min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (number - 1)) / 1000)
            assert line["error"] and line["rows"] >= 1 and line["level"] == "warning"
        for before, after in zip(series, series[1:], strict=False):
            waited = _seconds(after["timestamp"]) - _seconds(before["timestamp"])
            assert waited >= before["retry_in"] - 0.005, (before, after)
    if outage == DOWN:
        assert runs, "a write during the outage must have failed and been retried"


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@settings(max_examples=100, deadline=None, suppress_health_check=HEALTH, phases=PHASES)
@given(outage=st.sampled_from([DOWN, HANG]), seconds=st.floats(0.1, 0.4),
       sends=st.integers(1, 4), sender=st.integers(0, 2))
def test_property_11_error_handling_and_recovery(run: ChatRun, outage: str, seconds: float, sends: int,
                                                 sender: int) -> None:
    """Feature: im-backend-service, Property 11: Error Handling and Recovery

    *For any* database connection failure or critical error, the system should handle
    errors gracefully, attempt recovery with exponential backoff, and log detailed error
    information: while MySQL is down or hung, every send is still acknowledged (stored in
    JetStream) and delivered live; a request only MySQL can answer gets 5003, not 5000;
    history's writer retries its batch with doubling waits, each failure logged with the
    attempt, the error and the wait; once MySQL is back every message is stored exactly
    once, dense and as sent, and the writer logs its recovery.
    Requirements R5.5, R6.1, R6.4: database failures retried with backoff and logged in detail.
    """
    faulty = run.faulty
    since = faulty.log_size("history")
    first_new = run.last_seq + 1
    started = time.monotonic()
    getattr(faulty.mysql, outage)()
    try:
        answers = run.send(run.phones[sender], sends)
        assert all(a is not None and a["type"] == "message_ack" for a in answers), answers
        if outage == DOWN:
            with httpx.Client() as http:
                mysql_needing_request(run, http)
            # Down until the writer has met it with the batch in hand (on a loaded machine the
            # batch can come later than the drawn while): that write must fail and recover.
            wait_until(lambda: faulty.log_lines("history", since, "history.write_failed"), 10)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    finally:
        faulty.mysql.up()
    run.check_stored()
    assert first_new <= run.last_seq
    if outage == DOWN:
        recovered = wait_until(lambda: faulty.log_lines("history", since, "history.write_recovered"), 5)
        assert recovered and recovered[-1]["attempts"] >= 2
    check_backoff(faulty.log_lines("history", since, "history.write_failed"), outage)


def test_stored_rows_match_acks(run: ChatRun) -> None:
    """After the examples: MySQL holds the module's chat once per seq, nothing more."""
    stored = trio.run(fetch_stored, run.mysql, [run.chat_id])
    assert len(stored) == len({e.seq for e in stored}) == run.last_seq
