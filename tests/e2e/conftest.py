"""The whole product as processes, once per test session."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack, build_stack, start_stack


@pytest.fixture(scope="session")
def stack(common_env) -> Iterator[Stack]:
    log_dir = Path(tempfile.mkdtemp(prefix="nj-e2e-"))
    env = common_env("e2e")
    env.pop("NJ_E2E_HTTP_PORT")
    running = build_stack(env, log_dir)
    try:
        yield start_stack(running)
    finally:
        running.stop_all()
