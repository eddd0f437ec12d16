"""Prometheus metrics shared by every service (one registry per process).

Every service exposes all of them on ``/metrics``; each is fed by the service named in
its help text (the others show zeros). The names of the product's key metrics are fixed
by the requirements: ``concurrent_websocket_connections``, ``messages_in_total`` /
``messages_out_total`` with ``messages_per_second{direction}``,
``p99_message_delivery_latency`` (a histogram: ``histogram_quantile(0.99, ...)`` over its
``_bucket`` series gives the p99), ``session_store_hit_ratio`` and
``push_notification_queue_length``. docs/operations.md lists them all.

Hot-path counts (bus publishes, pool waits) are plain integers on the objects that own
them, read at scrape time by :class:`_RuntimeCollector`: a scrape costs a little, a
publish nothing.
"""

from __future__ import annotations

import math
import time
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

RPC_SECONDS = Histogram("nj_rpc_seconds", "Time to answer a bus request", ["verb", "outcome"],
                        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
RPC_EXPIRED = Counter("nj_rpc_expired_total",
                      "Bus requests dropped unanswered: still queued after their caller stopped waiting",
                      ["verb"])
MESSAGES_IN = Counter("messages_in_total", "Chat messages accepted from clients (router)")
MESSAGES_OUT = Counter("messages_out_total", "Events written to client sockets (gateway)")
CONNECTIONS = Gauge("concurrent_websocket_connections", "Open WebSocket connections (gateway)")
DELIVERY_LATENCY = Histogram(
    "p99_message_delivery_latency",
    "Seconds from an event's ts (router) to its fan-out to sockets at a gateway; "
    "p99 = histogram_quantile(0.99, rate(p99_message_delivery_latency_bucket[5m]))",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10))
HISTORY_ROWS = Counter("nj_history_rows_written_total", "Events written to MySQL by history")
HISTORY_WRITE_FAILURES = Counter("nj_history_write_failures_total",
                                 "Batch writes to MySQL that failed and will be retried (history)")
HISTORY_HOLES = Counter("nj_history_holes_reported_total",
                        "Seqs history found missing long after a higher one was stored and asked the router to void")
STALE_CLAIMS = Counter("nj_router_stale_claims_total",
                       "Send claims left pending by a router that died, settled by a resend (router)",
                       ["outcome"])
for _outcome in ("stored", "voided", "unsettled"):
    STALE_CLAIMS.labels(_outcome)
CACHE_LOOKUPS = Counter("nj_cache_lookups_total", "Cache lookups", ["cache", "result"])
REDELIVERED = Counter("nj_redelivered_events_total", "Events resent to a device that did not ack them")
CONSUMER_PENDING = Gauge("nj_jetstream_consumer_pending",
                         "Stream messages not yet delivered to the durable consumer (its lag)",
                         ["consumer"])
CONSUMER_ACK_PENDING = Gauge("nj_jetstream_consumer_ack_pending",
                             "Messages delivered to the consumer and not yet acked", ["consumer"])
CONSUMER_REDELIVERED = Gauge("nj_jetstream_consumer_redelivered",
                             "Messages JetStream is redelivering to the consumer", ["consumer"])
DEPENDENCY_STATE = Gauge("nj_dependency_state",
                         "State of a dependency at the last health probe: 2 ok, 1 degraded, 0 down",
                         ["dependency"])
BUS_EVENTS = Counter("nj_bus_connection_events_total",
                     "NATS connection events: disconnected, reconnected, error", ["event"])
for _event in ("disconnected", "reconnected", "error"):
    BUS_EVENTS.labels(_event)  # every series exists from the start, at 0

RATE_WINDOW_S = 10
# Lookups that found the answer in the session store: the session, or its revocation mark.
_SESSION_HITS = ("hit", "revoked")


class SlidingRate:
    """Events per second over the last ``window`` whole seconds.

    ``add`` is on the hot path (every frame written): it only counts into the current
    second; a finished second moves into a short ring when the next one starts.
    """

    def __init__(self, window: int = RATE_WINDOW_S):
        self.window = window
        self._second = 0
        self._current = 0
        self._done: deque[tuple[int, int]] = deque(maxlen=window)  # (second, count)

    def add(self, n: int = 1, now: float | None = None) -> None:
        second = int(time.monotonic() if now is None else now)
        if second != self._second:
            self._roll(second)
        self._current += n

    def _roll(self, second: int) -> None:
        if self._current:
            self._done.append((self._second, self._current))
        self._second, self._current = second, 0

    def rate(self, now: float | None = None) -> float:
        """The current second is still filling: only the ``window`` before it count."""
        second = int(time.monotonic() if now is None else now)
        if second != self._second:
            self._roll(second)
        return sum(c for s, c in self._done if s >= second - self.window) / self.window


IN_RATE, OUT_RATE = SlidingRate(), SlidingRate()


def message_in(n: int = 1) -> None:
    MESSAGES_IN.inc(n)
    IN_RATE.add(n)


def message_out(n: int = 1) -> None:
    MESSAGES_OUT.inc(n)
    OUT_RATE.add(n)


class BusStats(Protocol):
    published: int
    requests: int
    request_timeouts: int
    no_responders: int
    dropped: int

    @property
    def outbox_length(self) -> int: ...


class PoolStats(Protocol):
    pool_size: int
    waits: int

    @property
    def pool_in_use(self) -> int: ...

    @property
    def pool_waiting(self) -> int: ...


_BUSES: weakref.WeakSet[Any] = weakref.WeakSet()
_POOLS: weakref.WeakSet[Any] = weakref.WeakSet()


def track_bus(bus: BusStats) -> None:
    _BUSES.add(bus)


def track_pool(pool: PoolStats) -> None:
    _POOLS.add(pool)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _lookups() -> dict[tuple[str, str], float]:
    """(cache, result) -> count, from nj_cache_lookups_total."""
    return {(s.labels["cache"], s.labels["result"]): s.value
            for family in CACHE_LOOKUPS.collect() for s in family.samples
            if s.name == "nj_cache_lookups_total"}


def _ratio(hits: float, total: float) -> float:
    return hits / total if total else math.nan


class _RuntimeCollector(Collector):
    """Metrics computed at scrape time from the live buses, pools, rates and caches."""

    def collect(self) -> Iterator[Metric]:
        yield from self._bus()
        yield from self._pools()
        yield from self._rates_and_ratios()

    def _bus(self) -> Iterator[Metric]:
        buses = list(_BUSES)
        yield _counter("nj_bus_published", "Messages handed to NATS (publishes, requests, "
                       "replies, acks)", sum(b.published for b in buses))
        yield _counter("nj_bus_requests", "Requests sent over the bus", sum(b.requests for b in buses))
        yield _counter("nj_bus_request_timeouts", "Requests that got no reply in time",
                       sum(b.request_timeouts for b in buses))
        yield _counter("nj_bus_no_responders", "Requests nobody subscribed to",
                       sum(b.no_responders for b in buses))
        yield _counter("nj_bus_dropped", "Inbound messages dropped: a subscriber fell behind",
                       sum(b.dropped for b in buses))
        yield _gauge("nj_bus_outbox_length", "Messages queued for NATS, not yet handed over",
                     sum(b.outbox_length for b in buses))

    def _pools(self) -> Iterator[Metric]:
        pools = list(_POOLS)
        yield _gauge("nj_db_pool_size", "MySQL connections a process may hold",
                     sum(p.pool_size for p in pools))
        yield _gauge("nj_db_pool_in_use", "MySQL connections busy in a transaction",
                     sum(p.pool_in_use for p in pools))
        yield _gauge("nj_db_pool_waiting", "Transactions waiting for a free MySQL connection",
                     sum(p.pool_waiting for p in pools))
        yield _counter("nj_db_pool_waits", "Transactions that had to wait for a connection",
                       sum(p.waits for p in pools))

    def _rates_and_ratios(self) -> Iterator[Metric]:
        rate = GaugeMetricFamily("messages_per_second",
                                 f"Chat messages per second over the last {RATE_WINDOW_S} s: "
                                 "in = accepted (router), out = written to sockets (gateway)",
                                 labels=["direction"])
        rate.add_metric(["in"], IN_RATE.rate())
        rate.add_metric(["out"], OUT_RATE.rate())
        yield rate
        lookups = _lookups()
        session = {r: v for (c, r), v in lookups.items() if c == "auth_session"}
        yield _gauge("session_store_hit_ratio",
                     "auth session checks answered by Redis (session or revocation mark) "
                     "out of all, since start; NaN before the first",
                     _ratio(sum(session.get(r, 0) for r in _SESSION_HITS), sum(session.values())))
        ratio = GaugeMetricFamily("nj_cache_hit_ratio", "Cache hits out of lookups, since start",
                                  labels=["cache"])
        for cache in sorted({c for c, _ in lookups}):
            hits = sum(v for (c, r), v in lookups.items() if c == cache and r in ("hit", "revoked"))
            ratio.add_metric([cache], _ratio(hits, sum(v for (c, _), v in lookups.items() if c == cache)))
        yield ratio


REGISTRY.register(_RuntimeCollector())
