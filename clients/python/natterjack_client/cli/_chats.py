"""chats, chat create/show/add/remove, read, presence."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .._models import Chat

if TYPE_CHECKING:
    from ._app import Context


def add_commands(commands: Any) -> None:
    from ._app import Parser, add_command
    add_command(commands, "chats", run_chats, "your chats with unread counts")
    chat: Parser = commands.add_parser("chat", help="create a chat, show one, change members")
    actions = chat.add_subparsers(dest="action", metavar="<action>", required=True)
    create = add_command(actions, "create", run_create, "create a chat (direct: the existing one)")
    create.add_argument("members", nargs="+", metavar="user_id", help="the other members")
    create.add_argument("--name", help="group name")
    create.add_argument("--direct", action="store_true", help="a direct chat with one user")
    add_command(actions, "show", run_show, "a chat and its members").add_argument("chat")
    add = add_command(actions, "add", run_add, "add a member (owners/admins)")
    add.add_argument("chat")
    add.add_argument("user_id")
    add.add_argument("--role", choices=["member", "admin"])
    remove = add_command(actions, "remove", run_remove, "remove a member, or leave (your own id)")
    remove.add_argument("chat")
    remove.add_argument("user_id")
    read = add_command(commands, "read", run_read, "move your read position in a chat")
    read.add_argument("chat")
    read.add_argument("seq", type=int)
    add_command(commands, "presence", run_presence, "whether a user is online").add_argument("user_id")


async def run_chats(context: Context, args: argparse.Namespace) -> None:
    async with context.client() as client:
        chats = await client.chats()
    context.out.table([c.raw for c in chats], ["chat_id", "type", "name", "last_seq", "unread"],
                      {"chats": [c.raw for c in chats]})


async def run_create(context: Context, args: argparse.Namespace) -> None:
    async with context.client() as client:
        chat = await client.create_chat(args.members, type="direct" if args.direct else "group",
                                        name=args.name)
    show_chat(context, chat)


async def run_show(context: Context, args: argparse.Namespace) -> None:
    async with context.client() as client:
        show_chat(context, await client.chat(args.chat))


async def run_add(context: Context, args: argparse.Namespace) -> None:
    async with context.client() as client:
        show_chat(context, await client.add_member(args.chat, args.user_id, args.role))


async def run_remove(context: Context, args: argparse.Namespace) -> None:
    async with context.client() as client:
        await client.remove_member(args.chat, args.user_id)
    context.out.emit({"removed": args.user_id}, f"removed {args.user_id} from {args.chat}")


async def run_read(context: Context, args: argparse.Namespace) -> None:
    async with context.client() as client:
        await client.read(args.chat, args.seq)
    context.out.emit({"chat_id": args.chat, "seq": args.seq}, f"read up to #{args.seq}")


async def run_presence(context: Context, args: argparse.Namespace) -> None:
    async with context.client() as client:
        presence = await client.presence(args.user_id)
    context.out.emit(presence.raw, f"{presence.user_id} {presence.status}")


def show_chat(context: Context, chat: Chat) -> None:
    members = ", ".join(f"{m.user_id} ({m.role})" for m in chat.members)
    context.out.emit(chat.raw, f"{chat.chat_id} {chat.type} {chat.name or '-'} last_seq {chat.last_seq}"
                               f"\nmembers: {members}")
