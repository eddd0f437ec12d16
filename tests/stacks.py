"""The whole product as processes on a nats-server of the test's own.

``running_stack`` is what every module-scoped ``stack`` fixture runs (tests/conftest.py has
the default one; a module overrides ``stack_env`` for its own knobs, or calls
``running_stack`` itself with a nats-server of its own, e.g. one that enforces users).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from libs.natsd import NatsServer
from tools.stack import Stack, build_stack, start_stack


@contextlib.contextmanager
def running_stack(common_env, nats: NatsServer, **extra: str) -> Iterator[Stack]:
    """The five services against ``nats`` (as its users, when it has them); ``extra`` env on
    top. The logs are removed afterwards unless NJ_KEEP_LOGS is set."""
    log_dir = Path(tempfile.mkdtemp(prefix="nj-e2e-"))
    # A loaded CI machine can leave history seconds behind: let catch-up wait for it.
    # Most test clients never ack: resends start late unless a module asks for its own backoff.
    env = common_env("e2e", **{"NJ_NATS_URL": nats.url, "NJ_LOG_LEVEL": "info",
                               "NJ_GATEWAY_CATCH_UP_WAIT_S": "15", "NJ_PRESENCE_TTL_S": "3",
                               "NJ_DLV_BACKOFF_S": "5,10,20", **extra})
    env.pop("NJ_E2E_HTTP_PORT")
    running = build_stack(env, log_dir, nats.users)
    try:
        yield start_stack(running)
    finally:
        running.stop_all()
        if not os.environ.get("NJ_KEEP_LOGS"):
            shutil.rmtree(log_dir, ignore_errors=True)
