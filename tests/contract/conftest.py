"""Contract tests: the running product checked against what ``proto/`` promises.

Each module gets the whole product as processes on a nats-server of its own (the nats-server's
monitoring port lets a test see every connection's subscriptions).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from libs.natsd import NatsServer
from tests.e2e.conftest import running_stack
from tools.stack import Stack, running_nats


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """Extra environment for the module's stack (a module overrides this fixture for its knobs)."""
    return {}


@pytest.fixture(scope="module")
def stack_nats() -> Iterator[NatsServer]:
    with running_nats("nj-contract-nats-") as server:
        yield server


@pytest.fixture(scope="module")
def stack(common_env, stack_nats: NatsServer, stack_env: dict[str, str]) -> Iterator[Stack]:
    with running_stack(common_env, stack_nats, **stack_env) as running:
        yield running
