"""bus tail / bus streams: what travels on NATS and the JetStream backlog, for operators.

The equivalents of ``nats sub <subject>`` and ``nats stream info`` / ``nats consumer info``
(docs/operations.md), on nats-py (``pip install 'natterjack-client[bus]'``). nats-py runs on
asyncio, so each command runs its own asyncio loop in a worker thread; failures come back
as the CLI's errors (one line, the documented exit code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import trio

from .._errors import FORBIDDEN, NOT_FOUND, ApiError, LoginRequired, Unavailable

if TYPE_CHECKING:
    from ._app import Context

DEFAULT_SERVER = "nats://127.0.0.1:4222"
REQUEST_TIMEOUT_S = 5.0
CONSUMER_COLUMNS = ["consumer", "num_pending", "num_ack_pending", "num_redelivered",
                    "delivered_seq", "ack_floor_seq"]
ENVIRONMENT = f"""\
environment:
  NJ_NATS_URL       NATS server (default {DEFAULT_SERVER}); --server wins
  NJ_NATS_USER      NATS user; --user wins
  NJ_NATS_PASSWORD  its password; --password wins
"""


def add_commands(commands: Any) -> None:
    from ._app import Parser, add_command
    connection = _connection_options()
    bus: Parser = commands.add_parser("bus", help="inspect the NATS bus (operators)",
                                      description="Inspect the NATS bus the services talk over.")
    actions = bus.add_subparsers(dest="action", metavar="<action>", required=True)
    tail = add_command(actions, "tail", run_tail, "print messages on a subject (like nats sub)")
    _with(tail, connection)
    tail.add_argument("subject", help="a subject or wildcard, e.g. 'im.>' or 'im.msg.*'")
    tail.add_argument("--count", type=int, help="stop after this many messages")
    tail.add_argument("--timeout", type=float, help="stop after this many seconds")
    streams = add_command(actions, "streams", run_streams,
                          "JetStream streams and their consumers' lag (like nats stream info)")
    _with(streams, connection)
    streams.add_argument("stream", nargs="?", help="only this stream (default: every stream)")


def _connection_options() -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    return [
        (("--server",), dict(help=f"NATS URL (env NJ_NATS_URL; default {DEFAULT_SERVER})")),
        (("--user",), dict(help="NATS user (env NJ_NATS_USER)")),
        (("--password",), dict(help="NATS password (env NJ_NATS_PASSWORD)")),
        # Also accepted after the command; SUPPRESS keeps a global --json from being reset.
        (("--json",), dict(action="store_true", default=argparse.SUPPRESS,
                           help="one JSON document per message / for all streams")),
    ]


def _with(parser: Any, options: list[tuple[tuple[str, ...], dict[str, Any]]]) -> None:
    parser.epilog = ENVIRONMENT
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for flags, kwargs in options:
        parser.add_argument(*flags, **kwargs)


async def run_tail(context: Context, args: argparse.Namespace) -> None:
    from ._app import UsageError
    if not args.subject.strip() or any(c.isspace() for c in args.subject):
        raise UsageError(f"bad subject {args.subject!r}: no spaces, e.g. 'im.>'")
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")

    async def tail(nc: Any, errors: asyncio.Queue[Any]) -> None:
        await _tail(nc, errors, args, lambda msg, n: _print_message(context, msg, n))

    await _in_asyncio(_session(args, tail))


async def run_streams(context: Context, args: argparse.Namespace) -> None:
    found: list[dict[str, Any]] = []

    async def collect(nc: Any, errors: asyncio.Queue[Any]) -> None:
        found.extend(await _streams(nc, errors, args.stream))

    await _in_asyncio(_session(args, collect))
    _print_streams(context, found)


async def _in_asyncio(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run an asyncio coroutine to its end in a worker thread (^C abandons it)."""
    await trio.to_thread.run_sync(asyncio.run, coroutine, abandon_on_cancel=True)


Work = Callable[[Any, "asyncio.Queue[Any]"], Awaitable[None]]


async def _session(args: argparse.Namespace, work: Work) -> None:
    """Connect, run ``work(nc, errors)``, close. ``errors`` receives the server's errors."""
    try:
        import nats
    except ImportError:
        from ._app import UsageError
        raise UsageError("natterjack bus needs nats-py: pip install 'natterjack-client[bus]'") \
            from None
    errors: asyncio.Queue[Any] = asyncio.Queue()
    server = args.server or os.environ.get("NJ_NATS_URL") or DEFAULT_SERVER
    user = args.user or os.environ.get("NJ_NATS_USER") or None
    password = args.password or os.environ.get("NJ_NATS_PASSWORD") or None

    async def on_error(exc: Exception) -> None:
        errors.put_nowait(exc)

    try:
        nc = await nats.connect(servers=[server], user=user, password=password,
                                name="natterjack-bus-cli", connect_timeout=2,
                                allow_reconnect=False, max_reconnect_attempts=1,
                                reconnect_time_wait=0.1, error_cb=on_error)
    except Exception as exc:  # nats-py raises unrelated types for one failed connect
        raise _connect_error(server, exc, errors) from None
    try:
        await work(nc, errors)
    finally:
        await nc.close()


def _connect_error(server: str, exc: Exception, errors: asyncio.Queue[Any]) -> Exception:
    causes = [exc] + [errors.get_nowait() for _ in range(errors.qsize())]
    if any("authorization violation" in str(c).lower() for c in causes):
        return LoginRequired(f"NATS at {server} refused the user/password (authorization "
                             "violation): check --user/--password or NJ_NATS_USER/NJ_NATS_PASSWORD")
    cause = next((c for c in reversed(causes) if str(c)), exc)
    return Unavailable(f"cannot connect to NATS at {server}: {cause}")


def _refusal(exc: Exception) -> ApiError:
    """A permissions violation reported by the server, as the CLI's refusal (exit 2)."""
    return ApiError(f"NATS refused: {str(exc).removeprefix('nats: ')} (this NATS user may not "
                    "do that: see the permissions of the deploy config)", FORBIDDEN)


async def _tail(nc: Any, errors: asyncio.Queue[Any], args: argparse.Namespace,
                show: Callable[[Any, int], None]) -> None:
    """Print messages until --count of them, --timeout seconds, or a refusal."""
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    await nc.subscribe(args.subject, cb=inbox.put)
    await nc.flush()
    # On stderr, so that stdout holds only messages: from here on nothing is missed.
    print(f"bus tail: subscribed to {args.subject!r} on {nc.connected_url.geturl()}",
          file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    deadline = None if args.timeout is None else loop.time() + args.timeout
    seen = 0
    while args.count is None or seen < args.count:
        _raise_refusal(errors)
        remaining = None if deadline is None else deadline - loop.time()
        if remaining is not None and remaining <= 0:
            return
        try:
            message = await asyncio.wait_for(_next(inbox, errors), remaining)
        except TimeoutError:
            return
        seen += 1
        show(message, seen)


async def _next(inbox: asyncio.Queue[Any], errors: asyncio.Queue[Any]) -> Any:
    """The next message, or the server's refusal of the subscription as an error."""
    message = asyncio.ensure_future(inbox.get())
    refused = asyncio.ensure_future(errors.get())
    done, pending = await asyncio.wait({message, refused}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if refused in done:
        raise _refusal(refused.result())
    return message.result()


def _raise_refusal(errors: asyncio.Queue[Any]) -> None:
    if not errors.empty():
        raise _refusal(errors.get_nowait())


async def _streams(nc: Any, errors: asyncio.Queue[Any], only: str | None) -> list[dict[str, Any]]:
    import nats.errors
    import nats.js.errors
    jsm = nc.jsm(timeout=REQUEST_TIMEOUT_S)
    try:
        infos = [await jsm.stream_info(only)] if only else await jsm.streams_info()
        return [await _stream(jsm, info) for info in infos]
    except nats.js.errors.NotFoundError:
        raise ApiError(f"no stream {only!r} (see: natterjack bus streams)", NOT_FOUND) from None
    except nats.errors.NoRespondersError:
        raise Unavailable("JetStream is not enabled on this NATS server") from None
    except nats.errors.TimeoutError:
        _raise_refusal(errors)
        raise Unavailable(f"JetStream did not answer within {REQUEST_TIMEOUT_S:g} s") from None


async def _stream(jsm: Any, info: Any) -> dict[str, Any]:
    state = info.state
    consumers = await jsm.consumers_info(info.config.name)
    return {
        "stream": info.config.name, "subjects": list(info.config.subjects or []),
        "messages": state.messages, "bytes": state.bytes,
        "first_seq": state.first_seq, "last_seq": state.last_seq,
        "consumers": sorted((_consumer(c) for c in consumers), key=lambda c: c["consumer"]),
    }


def _consumer(info: Any) -> dict[str, Any]:
    return {
        "consumer": info.name, "num_pending": info.num_pending,
        "num_ack_pending": info.num_ack_pending, "num_redelivered": info.num_redelivered,
        "delivered_seq": info.delivered.stream_seq if info.delivered else None,
        "ack_floor_seq": info.ack_floor.stream_seq if info.ack_floor else None,
    }


def _print_streams(context: Context, streams: list[dict[str, Any]]) -> None:
    if context.out.as_json:
        context.out.emit({"streams": streams}, "")
        return
    if not streams:
        print("no streams", flush=True)
    for stream in streams:
        print(f"stream {stream['stream']}  subjects {' '.join(stream['subjects'])}  "
              f"messages {stream['messages']}  bytes {stream['bytes']}  "
              f"first_seq {stream['first_seq']}  last_seq {stream['last_seq']}  "
              f"consumers {len(stream['consumers'])}", flush=True)
        if stream["consumers"]:
            context.out.table(stream["consumers"], CONSUMER_COLUMNS, None)


def _print_message(context: Context, message: Any, number: int) -> None:
    headers = dict(message.headers or {})
    body = _body(message.data)
    data = {"subject": message.subject, "reply": message.reply or None, "headers": headers,
            "data": body, "size": len(message.data)}
    lines = [f"[#{number}] {message.subject}" + (f"  reply {message.reply}" if message.reply else "")]
    lines += [f"  {name}: {value}" for name, value in headers.items()]
    shown = json.dumps(body, indent=2, ensure_ascii=False) if not isinstance(body, str) else body
    lines += ["  " + line for line in shown.splitlines()] + [""]
    context.out.emit(data, "\n".join(lines))


def _body(data: bytes) -> Any:
    """The JSON value of a payload, else its text, else a note of its size."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return f"<{len(data)} bytes, not UTF-8>"
    try:
        return json.loads(text) if text.strip() else text
    except ValueError:
        return text
