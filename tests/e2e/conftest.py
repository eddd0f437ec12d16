"""The whole product as processes, with a nats-server of its own, once per test module."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.natsd import NatsServer
from tools.stack import Stack, build_stack, running_nats, start_stack


@pytest.fixture(scope="module")
def stack_nats() -> Iterator[NatsServer]:
    with running_nats("nj-e2e-nats-") as server:
        yield server


@pytest.fixture(scope="module")
def stack(common_env, stack_nats: NatsServer) -> Iterator[Stack]:
    with running_stack(common_env, stack_nats) as running:
        yield running


@contextlib.contextmanager
def running_stack(common_env, nats: NatsServer, **extra: str) -> Iterator[Stack]:
    """The five services against ``nats``; ``extra`` env on top (a module's own knobs)."""
    log_dir = Path(tempfile.mkdtemp(prefix="nj-e2e-"))
    # A loaded CI machine can leave history seconds behind: let catch-up wait for it.
    # Most test clients never ack: resends start late unless a module asks for its own backoff.
    env = common_env("e2e", **{"NJ_NATS_URL": nats.url, "NJ_LOG_LEVEL": "info",
                               "NJ_GATEWAY_CATCH_UP_WAIT_S": "15", "NJ_PRESENCE_TTL_S": "3",
                               "NJ_DLV_BACKOFF_S": "5,10,20", **extra})
    env.pop("NJ_E2E_HTTP_PORT")
    running = build_stack(env, log_dir)
    try:
        yield start_stack(running)
    finally:
        running.stop_all()
