"""A circuit breaker: after a dependency failed, callers fail at once until a trial succeeds.

Closed (the normal state), every call goes through. A failure opens it for a wait that
starts at ``base`` and doubles with each failure in a row, up to ``most``. While open,
:meth:`Breaker.admit` raises :class:`libs.errors.Unavailable` at once: nobody queues on a
dependency that is known to be away. Once the wait is over, one call is let through as the
trial (half-open); its success closes the breaker, its failure opens it again for longer.
Anything else that learns the dependency answers (a health probe) may close it too.

Pure state and a clock (trio's, so tests run it on ``autojump_clock``); no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from . import log
from .errors import Unavailable

logger = log.get("breaker")


class Breaker:
    def __init__(self, name: str, base: float, most: float,
                 clock: Callable[[], float] = trio.current_time):
        self.name = name
        self.base = base
        self.most = max(base, most)
        self.clock = clock
        self.open_until: float | None = None  # None: closed
        self.failures = 0  # in a row
        self.trial = False  # a trial call is in flight

    @property
    def is_open(self) -> bool:
        return self.open_until is not None

    def admit(self) -> bool:
        """Let a call through (True when it is the trial), or raise Unavailable."""
        if self.open_until is None:
            return False
        retry_in = self.open_until - self.clock()
        if self.trial or retry_in > 0:
            raise Unavailable(f"{self.name} unavailable",
                              details={self.name: "circuit open", "retry_in_s": round(max(retry_in, 0), 3)})
        self.trial = True
        return True

    def succeeded(self) -> None:
        """The dependency answered: close."""
        if self.open_until is not None:
            logger.info("breaker.closed", dependency=self.name, failures=self.failures)
        self.open_until, self.failures, self.trial = None, 0, False

    def failed(self) -> None:
        """The dependency is away: open (again) for the next, doubled wait."""
        wait = min(self.most, self.base * 2 ** min(self.failures, 60))
        self.failures += 1
        self.open_until, self.trial = self.clock() + wait, False
        logger.warning("breaker.open", dependency=self.name, failures=self.failures, retry_in=wait)

    def abandoned(self) -> None:
        """The trial ended without a verdict (cancelled): let the next call try."""
        self.trial = False
