"""register, login, logout, whoami."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import Context


def add_commands(commands: Any) -> None:
    from ._app import add_command
    register = add_command(commands, "register", run_register, "create an account")
    register.add_argument("username")
    register.add_argument("--password", help="default: env NJ_PASSWORD, else asked for")
    register.add_argument("--display-name")
    login = add_command(commands, "login", run_login, "log this device in and keep the tokens")
    login.add_argument("username")
    login.add_argument("--password", help="default: env NJ_PASSWORD, else asked for")
    login.add_argument("--device-id", help="default: a new device id from the server")
    add_command(commands, "logout", run_logout, "end this device's session and forget the tokens")
    add_command(commands, "whoami", run_whoami, "the stored login")


def password(args: argparse.Namespace) -> str:
    """--password, NJ_PASSWORD, a prompt on a terminal, else one line of stdin."""
    given = args.password or os.environ.get("NJ_PASSWORD")
    if given:
        return str(given)
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


async def run_register(context: Context, args: argparse.Namespace) -> None:
    async with context.client(logged_in=False) as client:
        user_id = await client.register(args.username, password(args), args.display_name)
    context.out.emit({"user_id": user_id, "username": args.username},
                     f"registered {args.username} (user_id {user_id})")


async def run_login(context: Context, args: argparse.Namespace) -> None:
    async with context.client(logged_in=False) as client:
        client.on_credentials = None  # stored below, with the username
        credentials = await client.login(args.username, password(args), args.device_id)
    context.store.save(credentials, api=context.api, username=args.username)
    context.out.emit({"user_id": credentials.user_id, "device_id": credentials.device_id,
                      "ws_url": credentials.ws_url},
                     f"logged in as {args.username} (user_id {credentials.user_id}, "
                     f"device {credentials.device_id})")


async def run_logout(context: Context, args: argparse.Namespace) -> None:
    async with context.client() as client:
        await client.logout()
    context.store.forget()
    context.out.emit({"logged_out": True}, "logged out")


async def run_whoami(context: Context, args: argparse.Namespace) -> None:
    context.client()  # raises when not logged in
    stored = context.store.load() or {}
    shown = {k: stored.get(k) for k in ("username", "user_id", "device_id", "api", "ws_url")}
    context.out.emit(shown, " ".join(f"{k}={v}" for k, v in shown.items()))
