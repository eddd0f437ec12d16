"""Prometheus metrics shared by every service (one registry per process)."""

from prometheus_client import Counter, Gauge, Histogram

RPC_SECONDS = Histogram("nj_rpc_seconds", "Time to answer a bus request", ["verb", "outcome"],
                        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
MESSAGES_IN = Counter("messages_in_total", "Chat messages accepted from clients")
MESSAGES_OUT = Counter("messages_out_total", "Events written to client sockets")
CONNECTIONS = Gauge("concurrent_websocket_connections", "Open WebSocket connections")
DELIVERY_LATENCY = Histogram(
    "p99_message_delivery_latency", "Seconds from an event's ts to its fan-out at a gateway",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10))
HISTORY_ROWS = Counter("nj_history_rows_written_total", "Events written to MySQL by history")
CACHE_LOOKUPS = Counter("nj_cache_lookups_total", "Cache lookups", ["cache", "result"])
REDELIVERED = Counter("nj_redelivered_events_total", "Events resent to a device that did not ack them")
