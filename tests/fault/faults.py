"""The faults: how each is injected and restored, and what the product promises meanwhile."""

from __future__ import annotations

import re

import trio

from tools.stack import SERVICES

from .infra import FaultStack
from .scenario import Fault, Outcome

REDIS_USERS = SERVICES  # every service uses Redis, none requires it


def kill_service(service: str) -> Fault:
    def inject(fs: FaultStack) -> None:
        fs.kill(service)

    def restore(fs: FaultStack) -> None:
        fs.restart(service)

    return Fault(f"kill-{service}", f"kill -9 of {service}, restarted at once", inject, restore)


def _kill_nats(fs: FaultStack) -> None:
    fs.nats.kill()


def _start_nats(fs: FaultStack) -> None:
    fs.nats.start()


def _stop_redis(fs: FaultStack) -> None:
    fs.redis.stop(kill=True)


def _start_redis(fs: FaultStack) -> None:
    fs.redis.start()


def _flush_redis(fs: FaultStack) -> None:
    fs.redis.flushall()


def _nothing(fs: FaultStack) -> None:
    pass


async def watch_redis(fs: FaultStack, outcome: Outcome) -> None:
    """Every service answers /ready 200 with status degraded while Redis is away."""
    seen: dict[str, str] = {}
    while True:
        for service in REDIS_USERS:
            status, body = await trio.to_thread.run_sync(fs.ready, service)
            seen[service] = f"{status} {body.get('status', '?')}"
        outcome.notes["ready_during_fault"] = dict(seen)
        await trio.sleep(1)


async def watch_mysql(fs: FaultStack, outcome: Outcome) -> None:
    """What /ready of each service says while MySQL is away, and the delays history's
    writer waited between failed writes (recorded; the test checks they grow)."""
    skip = len(fs.log("history"))
    while True:
        seen = {}
        for service in SERVICES:
            status, body = await trio.to_thread.run_sync(fs.ready, service)
            seen[service] = f"{status} {body.get('status', '?')}"
        outcome.notes["ready_during_fault"] = seen
        outcome.notes["history_write_retries_s"] = history_backoff(fs.log("history")[skip:])
        await trio.sleep(1)


def history_backoff(log: str) -> list[float]:
    """The delays history's writer waited between failed MySQL writes (from its log)."""
    lines = [line for line in log.splitlines() if "history.write_failed" in line]
    return [float(m) for line in lines for m in re.findall(r'"retry_in":\s*([0-9.]+)', line)]


NATS = Fault("nats-restart", "kill -9 of nats-server, restarted on the same port and store",
             _kill_nats, _start_nats)
REDIS = Fault("redis-down", "Redis stopped (kill -9) for the outage, then started empty",
              _stop_redis, _start_redis, outage=True, watch=watch_redis, late_voids=True)
FLUSH = Fault("redis-flushall", "FLUSHALL of Redis under load", _flush_redis, _nothing,
              late_voids=True)
MYSQL_DOWN = Fault("mysql-down", "MySQL refused (proxy down) for the outage",
                   lambda fs: fs.mysql.down(), lambda fs: fs.mysql.up(), outage=True,
                   watch=watch_mysql)
MYSQL_HANG = Fault("mysql-hang", "MySQL hanging (proxy holds bytes) for the outage",
                   lambda fs: fs.mysql.hang(), lambda fs: fs.mysql.up(), outage=True,
                   watch=watch_mysql)
