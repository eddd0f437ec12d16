"""The prose under the load tables: how each figure is measured, and how to scale."""

HOW = """How it is measured: `make bench-load` starts servers of its own, one after another:
the relay (`bench/load/relay.py`, a bare trio-websocket server, ~60 lines: no auth, no
storage, no acks; a frame naming another client is written to that client as it is), then
isolated stacks of the five services (`tools.stack.isolated_stack`: own nats-server with
JetStream fsync always, a throwaway MySQL database and Redis prefix, cheap argon2 through
`NJ_ARGON2_TIME_COST=1`, `NJ_ARGON2_MEMORY_KIB=8` and one-hour tokens through
`NJ_ACCESS_TOKEN_TTL_S`). It does not use the `make up` stack: a fresh database and known
settings make runs comparable, and replicas can be added without touching a developer's
stack; it runs beside `make up` (free ports) or without it. The clients are the same for
the relay and the product: trio processes (multiprocessing, spawn), each holding many
WebSockets; everything on loopback, every loop bounded in count and time.

1. Durable 1:1: sender/recipient pairs in direct chats (on the relay, the recipient's name
   instead of a chat). Each step offers a rate for a fixed time, the pairs sending in turn,
   paced (at most 32 unanswered sends a socket, the gateway's default); content is the send
   time, so latency is send → first arrival at the recipient, across processes. Recipients
   ack every event. After a step, up to 10 s for the answers and arrivals; what has not
   arrived by then is 'missing'. A step holds with p99 < 50 ms, nothing missing and ≥ 90 %
   of the offered rate achieved; the steps stop after the first with loss, p99 > 1 s or
   < 80 % of the offered rate. Server CPU per message: utime + stime of the server
   processes from /proc/<pid>/stat over the step (five services + nats-server; the relay's
   one process), divided by the messages that arrived. MySQL and Redis are shared servers
   and not counted.
2. Idle: tokens issued first through the API (register, then one login per device, 4
   devices per user, from up to 4 processes each sending from 8 source addresses of its
   own: auth locks login attempts per client address under a Redis WATCH, one address
   makes every login race on one key), not in the connect rate; then the WebSockets
   opened from several processes (one per 8,000 sockets at least: a process may open
   20,000 files here), each on its own source address (127.0.0.2, .3, …), 64 handshakes
   in flight each; connects/s from the order until the last handshake; RSS growth of the
   gateway (VmRSS in /proc/<pid>/status) over its open connections, read a few seconds
   after the last one opened, and its open files then. The relay is measured the same way.
   2b: the same devices again, dealt evenly over G fresh gateway processes of the same
   stack (`--idle-gateways`, `--idle-spread`); RSS per connection of the worst gateway,
   connects/s overall. The relay holds the same count on one fresh process when it can
   (at most 19,000 sockets: 20,000 open files per process here). RSS per connection
   divides by the sockets still open when RSS is read; a socket the gateway closed in the
   meantime (e.g. a pong later than `NJ_GATEWAY_PING_TIMEOUT_S` on a starved machine) is
   shown as opened but not held.
3. Group: `bench.fanout.run` on a stack of its own (members in one client process).
4. History: the figures of the history section above (`bench.history`; its 10 M-row load
   takes about 7 minutes here, so it is not re-run by this tool).
5. 1,000 pending: `bench.delivery.backlog` (handshake → all held + final ack).
6. Reconnect: after the steps, every recipient closes; one message is sent into each of
   their chats and acked; then all recipients reconnect, evenly spread over 5 s; the figure
   is the time from a handshake to the first message arriving (the catch-up).

Every product run ends with the history checker (`tests/checker`): each acked message
stored once, every recipient holding every stored event of its chat exactly once after
dedup, in seq order. A run with a fault exits non-zero and its table says FAILED.
The profile: `py-spy record --gil --format raw` of gateway, router, history and
delivery-retry during the first step (needs root); the table shows the one that used most
CPU in it."""

SCALING = """Scaling each service: every service keeps its state in MySQL, Redis or
JetStream, so more processes of one share the work. Gateways: start more (each its own
`NJ_GATEWAY_WS_PORT`/`NJ_GATEWAY_HTTP_PORT`) behind a TCP or HTTP load balancer; a
message to a device on another gateway reaches it through the bus (the two-gateway run
above sends every message across). Routers, history and delivery-retry: start more with
the same environment; they join the same queue groups and JetStream consumers, and
per-chat ordering holds because the sequence number comes from Redis. Auth: more
processes behind the same `im.auth.*` queue group; login cost is argon2, bounded per
process by `NJ_ARGON2_MAX_CONCURRENCY`. On a 2-core machine a second process of a
service only helps while the first one cannot use a whole core."""
