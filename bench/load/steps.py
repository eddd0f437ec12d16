"""Scenario 1: rising rate steps, the same clients against the product and the relay.

Every step offers a rate for a number of seconds (pairs send in turn, paced), then waits
up to clients.DRAIN_S for the arrivals. A step holds when p99 < P99_GOAL_MS, nothing
sent (and, on the product, acked) went missing and the achieved rate is within 10 % of
the offered one. The steps stop after the first that breaks badly (loss, p99 above
BREAK_P99_MS or under 80 % of the offered rate), so an overloaded stack is not pushed
further. Server CPU per message: utime + stime of every server process over the step
(from the first send until the last arrival or the drain's end) / messages arrived.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from bench.delivery_clients import percentile

from .clients import DRAIN_S
from .fleet import Fleet, progress
from .procs import cpu_of

P99_GOAL_MS = 50.0
BREAK_P99_MS = 1000.0


def merge(answers: list[dict[str, Any]], rate: float, seconds: float,
          cpu: dict[str, float]) -> dict[str, Any]:
    """One step's figures from every worker's answer."""
    lat = [ms for a in answers for ms in a["latencies_ms"]]
    arrived = sum(a["arrived"] for a in answers)
    window = max(max(a["window_s"] for a in answers), seconds)
    total_cpu = sum(cpu.values())
    step = {"offered": rate, "seconds": seconds, "sent": sum(a["sent"] for a in answers),
            "refused": sum(a["refused"] for a in answers), "arrived": arrived,
            "missing": sum(a["missing"] + a["unanswered"] for a in answers), "achieved": arrived / window,
            "p50": percentile(lat, 50), "p90": percentile(lat, 90), "p99": percentile(lat, 99),
            "client_cpu_s": sum(a["client_cpu_s"] for a in answers),
            "cpu_s": cpu, "cpu_ms_per_msg": total_cpu * 1000 / max(arrived, 1),
            # The machine is shared: a step slowed by other work shows here, not in cpu_s.
            "load_average": os.getloadavg()[0]}
    step["codes"] = {c: sum(a["codes"].get(c, 0) for a in answers)
                     for c in {c for a in answers for c in a["codes"]}}
    step["held"] = holds(step)
    return step


def holds(step: dict[str, Any]) -> bool:
    return (step["p99"] < P99_GOAL_MS and step["missing"] == 0 and step["refused"] == 0
            and step["achieved"] >= 0.9 * step["offered"])


def breaks(step: dict[str, Any]) -> bool:
    return (step["missing"] > 0 or step["p99"] > BREAK_P99_MS
            or step["achieved"] < 0.8 * step["offered"])


def watcher(label: str, rate: float, seconds: float, pids: dict[str, int],
            before: dict[str, float]) -> Callable[[float], str]:
    def line(elapsed: float) -> str:
        used = sum(cpu_of(pids).values()) - sum(before.values())
        phase = "sending" if elapsed < seconds else "draining"
        return (f"[{label}] {rate:,.0f} msg/s offered: {phase} {elapsed:4.1f}/{seconds:.0f}+"
                f"{DRAIN_S:.0f} s, server CPU {used / max(elapsed, 0.1) * 100:3.0f} %")
    return line


def one_step(fleet: Fleet, label: str, rate: float, seconds: float,
             pids: dict[str, int]) -> dict[str, Any]:
    before = cpu_of(pids)
    share = rate / len(fleet.orders)
    answers = fleet.ask(("step", share, seconds), seconds + DRAIN_S + 60,
                        watcher(label, rate, seconds, pids, before))
    after = cpu_of(pids)
    step = merge(answers, rate, seconds, {n: after[n] - before[n] for n in pids})
    progress("")
    print(f"[{label}] {rate:,.0f} msg/s: achieved {step['achieved']:,.0f}, p50 {step['p50']:.1f} "
          f"p99 {step['p99']:.1f} ms, missing {step['missing']}, refused {step['refused']}, "
          f"server CPU {step['cpu_ms_per_msg']:.2f} ms/msg", flush=True)
    return step


def rising(fleet: Fleet, label: str, rates: list[float], seconds: float, pids: dict[str, int],
           before_step: Callable[[int, list[dict[str, Any]]], None] | None = None
           ) -> list[dict[str, Any]]:
    """The steps in order, until one breaks; ``before_step(i, done)`` may start a profile."""
    done: list[dict[str, Any]] = []
    for i, rate in enumerate(rates):
        if before_step:
            before_step(i, done)
        done.append(one_step(fleet, label, rate, seconds, pids))
        if breaks(done[-1]):
            break
        time.sleep(0.5)
    return done


def sustained(steps: list[dict[str, Any]]) -> float:
    """The highest offered rate that held (0 when none did)."""
    return max((s["offered"] for s in steps if s["held"]), default=0.0)
