"""send, tail, history, status."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from .._events import StoredEvent
from ._output import describe

if TYPE_CHECKING:
    from ._app import Context


def add_commands(commands: Any) -> None:
    from ._app import add_command
    send = add_command(commands, "send", run_send, "send a message; waits until it is stored")
    send.add_argument("chat")
    send.add_argument("text", help="the text (with --content-json: the content as JSON)")
    send.add_argument("--type", default="text", help="content type (default text)")
    send.add_argument("--content-json", action="store_true", help="TEXT is JSON content")
    send.add_argument("--id", help="client message id (a resend with the same id is one message)")
    tail = add_command(commands, "tail", run_tail, "print events as they arrive and ack them")
    tail.add_argument("chat", nargs="?", help="only this chat (default: every chat)")
    tail.add_argument("--count", type=int, help="stop after this many stored events")
    history = add_command(commands, "history", run_history, "a page of a chat's events")
    history.add_argument("chat")
    history.add_argument("--before", type=int, help="events below this seq")
    history.add_argument("--after", type=int, help="events above this seq (oldest first)")
    history.add_argument("--limit", type=int, help="page size, 1..200 (default 50)")
    status = add_command(commands, "status", run_status, "per-device delivery state of a message")
    status.add_argument("message_id")


async def run_send(context: Context, args: argparse.Namespace) -> None:
    content = _content(args)
    async with context.client() as client, client.connect(receive_events=False) as session:
        ack = await session.send_message(args.chat, content, content_type=args.type, client_id=args.id)
    context.out.emit(ack.raw, f"sent #{ack.seq} to {ack.chat_id} (message_id {ack.message_id})")


def _content(args: argparse.Namespace) -> Any:
    if not args.content_json:
        return args.text
    try:
        return json.loads(args.text)
    except ValueError as exc:
        from ._app import UsageError
        raise UsageError(f"--content-json: not JSON: {exc}") from None


async def run_tail(context: Context, args: argparse.Namespace) -> None:
    """What is printed is acked (cumulatively); events of other chats are neither."""
    printed = 0
    async with context.client() as client, client.connect(auto_ack=False) as session:
        async for event in session:
            if args.chat and event.raw.get("chat_id") != args.chat:
                continue
            context.out.event(event)
            if isinstance(event, StoredEvent):
                session.ack(event.chat_id, event.seq)
                printed += 1
            if args.count and printed >= args.count:
                return


async def run_history(context: Context, args: argparse.Namespace) -> None:
    async with context.client() as client:
        page = await client.history(args.chat, before_seq=args.before, after_seq=args.after,
                                    limit=args.limit)
    more = "\n(more: page on with --before/--after)" if page.has_more else ""
    context.out.emit(page.raw, "\n".join(describe(e) for e in page.events) + more)


async def run_status(context: Context, args: argparse.Namespace) -> None:
    async with context.client() as client:
        status = await client.message_status(args.message_id)
    if not context.out.as_json:
        print(f"message {status.message_id} in {status.chat_id} #{status.seq}")
    context.out.table([r.raw for r in status.recipients],
                      ["user_id", "device_id", "status", "attempts", "updated_ts"], status.raw)
