"""The whole product as processes, with a nats-server of its own, once per test module."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.natsd import NatsServer, start_nats
from tests.support.stack import Stack, build_stack, start_stack


@pytest.fixture(scope="module")
def stack_nats() -> Iterator[NatsServer]:
    store = Path(tempfile.mkdtemp(prefix="nj-e2e-nats-"))
    server = start_nats(store, log_file=store / "nats.log")
    yield server
    server.stop()
    shutil.rmtree(store, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(common_env, stack_nats: NatsServer) -> Iterator[Stack]:
    log_dir = Path(tempfile.mkdtemp(prefix="nj-e2e-"))
    env = common_env("e2e", NJ_NATS_URL=stack_nats.url)
    env.pop("NJ_E2E_HTTP_PORT")
    running = build_stack(env, log_dir)
    try:
        yield start_stack(running)
    finally:
        running.stop_all()
