"""Faults under load: nothing acked is lost or doubled, order holds, every send is answered,
every client ends up with everything, and each degradation behaves as promised.

``NJ_FAULT_PROFILE=short`` (the default, part of ``make test``) runs the faults marked
short with a few seconds of load; ``full`` (``make test-fault``) runs all of them with a
minute of load each. Figures go to ``test-artifacts/fault/<profile>-<fault>.json``.
"""

from __future__ import annotations

import pytest
import trio

from tests.checker import OUT_OF_ORDER
from tools.stack import SERVICES

from . import faults, results
from .infra import FaultStack
from .profile import current
from .scenario import Fault, Outcome, run_fault

PROFILE = current()
SHORT = {"kill-router", "nats-restart", "redis-down", "mysql-down"}

pytestmark = pytest.mark.timeout(PROFILE.timeout_s)

ALL = [*(faults.kill_service(s) for s in SERVICES), faults.NATS, faults.REDIS, faults.FLUSH,
       faults.MYSQL_DOWN, faults.MYSQL_HANG]


def _in_profile(fault: Fault) -> list[pytest.MarkDecorator]:
    if PROFILE.name == "short" and fault.name not in SHORT:
        return [pytest.mark.skip(reason="full profile only (NJ_FAULT_PROFILE=full)")]
    return []


@pytest.fixture
def healed(fault_stack: FaultStack):
    """The stack as a fault left it is made whole again, whatever the test's outcome."""
    yield fault_stack
    fault_stack.heal()


@pytest.mark.parametrize("fault", [pytest.param(f, id=f.name, marks=_in_profile(f)) for f in ALL])
async def test_fault_under_load(healed: FaultStack, fault: Fault) -> None:
    await trio.to_thread.run_sync(healed.heal)
    outcome = await run_fault(healed, PROFILE, fault)
    data = results.write(outcome)
    print(f"\n{fault.name}: {data}")
    report = outcome.report
    assert report is not None
    assert not report.failing - {OUT_OF_ORDER}, report.summary()
    assert outcome.drained, f"{data['offered'] - data['acked']} sends still unanswered"
    assert outcome.synced == PROFILE.clients, "a client's final sync got no sync_done"
    assert outcome.exited == [], f"processes exited: {outcome.exited}"
    assert data["failed_final"] == 0, "a send failed with a non-retryable error"
    _degradation(fault, outcome, data)
    if report.failing and fault.late_voids:
        pytest.xfail(f"known product limit (docs/reliability.md): "
                     f"{data['checker'][OUT_OF_ORDER]} events arrived after later ones "
                     f"({data['out_of_order_voids']} of them voids)\n{report.summary()}")
    report.assert_ok()


def _degradation(fault: Fault, outcome: Outcome, data: dict) -> None:
    if fault.name == "redis-down":
        ready = outcome.notes.get("ready_during_fault", {})
        assert ready and all(v == "200 degraded" for v in ready.values()), ready
        assert data["acked_during_fault"] > 0, "no send was acked while Redis was down"
    if fault.name in ("mysql-down", "mysql-hang"):
        assert data["acked_during_fault"] > 0, "no send was acked while MySQL was away"
        ready = outcome.notes.get("ready_during_fault", {})
        assert ready.get("router") == "200 degraded" and ready.get("gateway") == "200 ok", ready
        retries = outcome.notes.get("history_write_retries_s", [])
        assert retries == sorted(retries), f"history's write retries do not back off: {retries}"
