"""Health state of a service: which dependencies are up, and whether it takes work.

``/health`` answers 200 while the process runs; ``/ready`` answers 200 only while the
service is started, not draining, and every *required* dependency is up (an optional one
that is down makes it ``degraded`` but still ready). Probes are cached briefly so a
scraping load balancer does not hammer the databases.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

Probe = Callable[[], Awaitable[bool]]


@dataclass
class Health:
    probes: dict[str, tuple[Probe, bool]] = field(default_factory=dict)
    started: bool = False
    draining: bool = False
    cache_for: float = 1.0
    _last: dict[str, Any] | None = None
    _last_at: float = -1e9

    def add(self, name: str, probe: Probe, *, required: bool = True) -> None:
        self.probes[name] = (probe, required)

    async def _run_probes(self) -> dict[str, bool]:
        results: dict[str, bool] = {}

        async def run(name: str, probe: Probe) -> None:
            with trio.move_on_after(2):
                results[name] = await probe()
            results.setdefault(name, False)

        async with trio.open_nursery() as nursery:
            for name, (probe, _) in self.probes.items():
                nursery.start_soon(run, name, probe)
        return results

    async def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body) with body = {"status": "ok"|"degraded", "checks": {...}}."""
        now = trio.current_time()
        if self._last is None or now - self._last_at > self.cache_for:
            self._last, self._last_at = await self._run_probes(), now
        results = self._last
        checks = {name: "ok" if up else "down" for name, up in results.items()}
        required_down = any(not results[n] for n, (_, req) in self.probes.items() if req)
        status = "ok" if all(results.values()) else "degraded"
        if not self.started:
            checks["service"] = "starting"
        if self.draining:
            checks["service"] = "draining"
        ready = self.started and not self.draining and not required_down
        return ready, {"status": status, "checks": checks}
