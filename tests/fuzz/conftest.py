"""Fuzzing the running product: every input surface gets malformed input from hypothesis.

Each module runs the whole product as processes on a nats-server of its own
(``stack``, ``stack_nats``), with one knob: the gateway handles one frame of a socket at
a time (``NJ_GATEWAY_SENDS_IN_FLIGHT=1``), so whatever a frame causes is written before
the answer to the next one, and a valid frame sent after a fuzzed one fences its outcome.
Examples are derandomized and the example database is off: a run is repeatable.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.sql import query  # noqa: F401 - the fuzz modules import it from here
from tools.stack import SERVICES, Stack

from .loop import Loop

EXAMPLES = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
STACK_ENV = {"NJ_GATEWAY_SENDS_IN_FLIGHT": "1", "NJ_LOG_LEVEL": "info"}
# The contract's codes (proto/README.md); 5000 is a bug, 5003 means a healthy stack timed out.
CODES = {4000, 4001, 4002, 4003, 4004, 4009, 4010, 4013, 4022, 4029}


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return STACK_ENV


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    with Loop() as running:
        yield running


def assert_alive(stack: Stack) -> None:
    """Every service process still runs and answers /health with 200."""
    dead = {name: p.returncode for name, p in stack.processes.items() if p.poll() is not None}
    assert not dead, f"service processes died: {dead}\n" + "\n".join(stack.tail(n) for n in dead)
    for service in SERVICES:
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports[service]}/health", timeout=5) as answer:
            assert answer.status == 200, service


def assert_error_body(body: Any, allowed: set[int] = CODES) -> int:
    """``body`` is ``{"code", "message", "details"?}`` with a code from ``allowed``; the code."""
    assert isinstance(body, dict) and isinstance(body.get("message"), str), body
    assert body.get("code") in allowed, f"code {body.get('code')} not among {sorted(allowed)}: {body}"
    return int(body["code"])




def logged_errors(stack: Stack, service: str) -> list[str]:
    """Log lines of ``service`` at level error (tracebacks of handlers that raised)."""
    path = stack.log_dir / f"{service.replace('-', '_')}.out"
    text = path.read_text(errors="replace") if path.exists() else ""
    return [line for line in text.splitlines() if re.search(r'"level":\s*"(error|critical)"', line)]
