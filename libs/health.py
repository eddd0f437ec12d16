"""Health state of a service: how each dependency is, and whether the service takes work.

Each dependency is ``ok``, ``degraded`` (answering but impaired: slow, saturated, or a
part of it missing, e.g. NATS connected but JetStream not answering) or ``down``. The
service as a whole (``status``) is:

* ``down`` while it is starting, draining, or a *required* dependency is down:
  ``/ready`` answers 503;
* ``degraded`` when an optional dependency is down or any dependency is degraded: still
  ready (200), it serves with less;
* ``ok`` otherwise (200).

``/ready`` probes on demand (cached briefly, one run at a time, so a scraping load
balancer does not hammer the databases); ``/health`` (liveness) never probes: it answers
200 at once with the last known state, so a hung database cannot fail a liveness check
and get a healthy process restarted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from . import metrics

OK, DEGRADED, DOWN = "ok", "degraded", "down"
Probe = Callable[[], Awaitable[bool | str]]
_STATE_VALUE = {OK: 2, DEGRADED: 1, DOWN: 0}


def _state(result: bool | str) -> str:
    if isinstance(result, str):
        return result if result in _STATE_VALUE else DOWN
    return OK if result else DOWN


@dataclass
class Health:
    service: str = ""
    probes: dict[str, tuple[Probe, bool]] = field(default_factory=dict)
    started: bool = False
    draining: bool = False
    cache_for: float = 1.0
    timeout: float = 2.0
    _last: dict[str, str] = field(default_factory=dict)
    _last_at: float = -1e9
    _lock: trio.Lock = field(default_factory=trio.Lock)

    def add(self, name: str, probe: Probe, *, required: bool = True) -> None:
        """``probe()`` returns a state (``ok``/``degraded``/``down``) or a bool (up/down)."""
        self.probes[name] = (probe, required)

    async def _run_probes(self) -> dict[str, str]:
        results: dict[str, str] = {}

        async def run(name: str, probe: Probe) -> None:
            with trio.move_on_after(self.timeout):
                results[name] = _state(await probe())
            results.setdefault(name, DOWN)
            metrics.DEPENDENCY_STATE.labels(name).set(_STATE_VALUE[results[name]])

        async with trio.open_nursery() as nursery:
            for name, (probe, _) in self.probes.items():
                nursery.start_soon(run, name, probe)
        return results

    async def refresh(self) -> dict[str, str]:
        """Probe unless the last results are fresh; concurrent callers share one run."""
        async with self._lock:
            now = trio.current_time()
            if now - self._last_at > self.cache_for:
                self._last, self._last_at = await self._run_probes(), now
            return self._last

    async def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body) for ``/ready``, from fresh probes."""
        await self.refresh()
        return self.last_report()

    def last_report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body) from the last probes, without probing (``/health``).

        body = {"service": name, "status": "ok"|"degraded"|"down",
                "checks": {dependency: "ok"|"degraded"|"down", ["service": "starting"|"draining"]}}
        """
        checks = dict(sorted(self._last.items()))
        required_down = any(checks.get(name) == DOWN for name, (_, req) in self.probes.items() if req)
        ready = self.started and not self.draining and not required_down
        status = OK if all(state == OK for state in checks.values()) else DEGRADED
        if not self.started:
            checks["service"] = "starting"
        if self.draining:
            checks["service"] = "draining"
        return ready, {"service": self.service, "status": status if ready else DOWN,
                       "checks": checks}

    async def watch(self, interval: float = 5.0) -> None:
        """Keep the last state (``/health``, ``nj_dependency_state``) current between scrapes."""
        while True:
            await self.refresh()
            await trio.sleep(interval)
