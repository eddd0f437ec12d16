"""One invocation's runs: the relay, the product, the product on two gateways and two
routers; each on servers of its own, the same clients, the history checker on the product."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from bench import delivery, fanout
from bench.delivery_clients import percentile
from bench.delivery_load import CHEAP_ARGON2, counter
from libs.config import MySQLConfig
from libs.natsd import free_port
from tests.checker import Expectations, Run, check, wait_stored
from tools.stack import Stack, isolated_stack

from . import steps
from .clients import DRAIN_S, Pair
from .fleet import Fleet, progress
from .idle_runs import product_idle, relay_idle
from .people import product_pairs, relay_pairs
from .procs import Profile, cpu_of, stack_pids

# Cheap password hashes (setup registers thousands of users) and tokens that outlive a run.
STACK_ENV = {**CHEAP_ARGON2, "NJ_ACCESS_TOKEN_TTL_S": "3600"}
RECONNECT_SPREAD_S = 5.0
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Options:
    pairs: int
    workers: int
    rates: list[float]
    seconds: float
    idle: int
    idle_gateways: int
    idle_spread: int
    idle_seconds: float  # longest time opening one idle measurement's sockets (0: by count)
    members: int
    messages: int
    backlog_rounds: int
    horizontal: bool
    profile: Path | None  # where py-spy writes, None: no profile


# ---- the relay ---------------------------------------------------------------------------
class Relay:
    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "bench.load.relay", str(self.port)],
                                        cwd=REPO)
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.wait_ready()

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1)
            except urllib.error.HTTPError:
                return  # it answers HTTP (400: not a WebSocket upgrade): it listens
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("the relay did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def relay_run(opts: Options) -> dict[str, Any]:
    relay = Relay()
    try:
        pids = {"relay": relay.process.pid}
        fleet = Fleet.start(relay_pairs(relay.url, opts.pairs), True, opts.workers)
        try:
            done = steps.rising(fleet, "relay", opts.rates, opts.seconds, pids)
        finally:
            fleet.finish()
    finally:
        relay.stop()
    return {"steps": done, **relay_idle(Relay, opts.idle, opts.idle_spread, opts.workers,
                                        opts.idle_seconds)}


# ---- the product -------------------------------------------------------------------------
def mysql_of(stack: Stack) -> MySQLConfig:
    env = stack.env
    return MySQLConfig(env["NJ_MYSQL_HOST"], int(env["NJ_MYSQL_PORT"]), env["NJ_MYSQL_USER"],
                       env["NJ_MYSQL_PASSWORD"], env["NJ_MYSQL_DATABASE"], 1)


def merged(runs: list[Run]) -> Run:
    return Run(*(tuple(x for run in runs for x in getattr(run, part))
                 for part in ("sent", "acked", "failed", "received")))


async def check_run(stack: Stack, pairs: list[Pair], runs: list[Run]) -> dict[str, Any]:
    """Every acked message stored once, and held once, in order, by its recipient."""
    run = merged(runs)
    last: dict[str, int] = {}
    for ack in run.acked:
        last[ack.chat_id] = max(last.get(ack.chat_id, 0), ack.seq)
    stored = await wait_stored(mysql_of(stack), last, timeout=60)
    report = check(run, stored, Expectations(complete=[p.recipient.device for p in pairs],
                                             chats=[p.chat_id for p in pairs]))
    print(report.summary(), flush=True)
    return {"ok": report.ok, "counts": report.counts, "redeliveries": report.redeliveries,
            "stats": report.stats, "summary": report.summary()}


PROFILED = ("gateway", "router", "history", "delivery_retry")


def profiler(opts: Options, pids: dict[str, int], found: dict[str, Profile]):  # noqa: ANN201
    """Before the first step: py-spy on each service that does per-message work."""
    def before_step(i: int, done: list[dict[str, Any]]) -> None:
        if opts.profile is None or i != 0:
            return
        for name in PROFILED:
            out = opts.profile.with_name(f"{opts.profile.stem}-{name}.txt")
            found[name] = Profile(pids[name], opts.seconds, out)
    return before_step


def hottest_profile(found: dict[str, Profile], first: dict[str, Any]) -> dict[str, Any]:
    """The profile of the service that used most CPU in the first step."""
    for profile in found.values():
        profile.wait()
    name = max(found, key=lambda n: first["cpu_s"][n])
    return {"service": name, "top": found[name].top(), "samples": found[name].samples(),
            "others": {n: p.top(4).get("project", []) for n, p in found.items() if n != name}}


def reconnect_round(fleet: Fleet) -> dict[str, Any]:
    """Scenario 6: recipients leave, one message each waits, all come back within 5 s."""
    fleet.ask(("leave",), 60 + fleet.pairs / 20)
    time.sleep(1.0)  # their gateway let them go: the message will be pending, not pushed
    fleet.ask(("one_each",), 120)
    time.sleep(1.0)
    answers = fleet.ask(("reconnect", RECONNECT_SPREAD_S),
                        RECONNECT_SPREAD_S + DRAIN_S + 120 + fleet.pairs / 20)
    first = [ms for a in answers for ms in a["first_ms"]]
    result = {"clients": sum(a["sent"] for a in answers), "spread_s": RECONNECT_SPREAD_S,
              "arrived": sum(a["arrived"] for a in answers),
              "missing": sum(a["missing"] + a["unanswered"] for a in answers),
              "first_p50": percentile(first, 50), "first_p99": percentile(first, 99)}
    print(f"[product] reconnect: {result}", flush=True)
    return result


def resting_cpu(pids: dict[str, int], seconds: float = 3.0) -> float:
    """Server CPU seconds per second with every client connected and nothing sent."""
    before = sum(cpu_of(pids).values())
    time.sleep(seconds)
    return (sum(cpu_of(pids).values()) - before) / seconds


def rate_run(stack: Stack, opts: Options, label: str, ws_urls: list[str],
             rates: list[float], reconnect: bool) -> dict[str, Any]:
    """Scenario 1 (and 6) with the history check, on a running stack."""
    pids = stack_pids(stack)
    progress(f"[{label}] registering {2 * opts.pairs:,} users, {opts.pairs:,} direct chats")
    pairs = product_pairs(stack.api, ws_urls, opts.pairs)
    found: dict[str, Profile] = {}
    fleet = Fleet.start(pairs, False, opts.workers)
    try:
        at_rest = resting_cpu(pids)
        done = steps.rising(fleet, label, rates, opts.seconds, pids, profiler(opts, pids, found))
        again = reconnect_round(fleet) if reconnect else None
        runs = fleet.finish()
    except BaseException:
        fleet.stop()
        raise
    result = {"steps": done, "reconnect": again, "resting_cpu": at_rest,
              "check": trio.run(check_run, stack, pairs, runs)}
    if found:
        result["profile"] = hottest_profile(found, done[0])
    return result


def product_run(opts: Options) -> dict[str, Any]:
    with isolated_stack(STACK_ENV) as stack:
        result = rate_run(stack, opts, "product", [stack.ws_url], opts.rates, reconnect=True)
        if opts.backlog_rounds:
            result["backlog"] = trio.run(delivery.backlog, stack.api, stack.ws_url,
                                         opts.backlog_rounds, 1000)
        result.update(product_idle(stack, opts.idle, opts.idle_gateways, opts.idle_spread,
                                   opts.workers, opts.idle_seconds))
    if opts.members:
        result["fanout"] = group_run(opts)
    return result


def group_run(opts: Options) -> dict[str, Any]:
    """Scenario 3 on a stack of its own; a socket the gateway closed ends it as a failure
    (its clients share one process: on a loaded machine the sender can fall behind)."""
    with isolated_stack(STACK_ENV) as stack:
        found: dict[str, Any]
        try:
            found = trio.run(fanout.run, stack.api, stack.ws_url, opts.members, opts.messages)
        except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
            found = {"error": " ".join(str(exc).split())[:200]}
    return {**found, "members": opts.members}


def horizontal_run(opts: Options, rates: list[float]) -> dict[str, Any]:
    """Two gateways and two routers: every message crosses from one gateway to the other."""
    with isolated_stack(STACK_ENV) as stack:
        _, ws2 = stack.start_gateway("gateway2")
        stack.start_replica("router", "router2")
        before = {g: counter(stack, g, "messages_out_total") for g in ("gateway", "gateway2")}
        result = rate_run(stack, opts, "2 gw + 2 routers", [stack.ws_url, ws2], rates, False)
        result["messages_out"] = {g: counter(stack, g, "messages_out_total") - before[g]
                                  for g in before}
    return result
