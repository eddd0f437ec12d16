"""The whole product as processes for the client tests, and users logged in through the SDK."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

from natterjack_client import Client

from tests.stacks import running_stack
from tools.stack import Stack, running_nats

PASSWORD = "correct horse battery"


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


@contextlib.contextmanager
def client_stack(common_env: Any, **env: str) -> Iterator[Stack]:
    """The five services on a nats-server of their own, with ``env`` knobs."""
    with running_nats("nj-clients-nats-") as nats, \
            running_stack(common_env, nats, NJ_LOG_LEVEL="warning", **env) as stack:
        yield stack


@contextlib.asynccontextmanager
async def logged_in(stack: Stack, prefix: str = "user", device_id: str | None = None
                    ) -> AsyncIterator[Client]:
    """A new user, registered and logged in through the SDK."""
    async with Client(stack.api) as client:
        username = unique(prefix)
        await client.register(username, PASSWORD)
        await client.login(username, PASSWORD, device_id)
        yield client
