"""The ``natterjack`` command: global options, the command groups, errors to exit codes.

Each command group is a module with ``add_commands(subparsers)`` that gives every
command a ``run(context, args)`` coroutine; a new group (e.g. ``bus``) is one more module
in ``COMMAND_GROUPS``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any, NoReturn

import trio

from .._client import DEFAULT_API, Client
from .._errors import LoginRequired, NatterjackClientError, Unavailable
from . import _accounts, _bus, _chats, _messages, _types
from ._output import Output
from ._store import CredentialStore

OK, USAGE, API_ERROR, AUTH, UNAVAILABLE = 0, 1, 2, 3, 4
COMMAND_GROUPS: list[ModuleType] = [_accounts, _chats, _messages, _types, _bus]
EPILOG = f"""\
exit codes:
  0  ok
  1  usage error (bad command or arguments)
  2  the API refused the request (the error code is printed); bus: NATS refused
     (permissions) or no such stream
  3  not logged in, or the login is no longer valid (run: natterjack login);
     bus: NATS refused the user/password
  4  the API or WebSocket is unavailable (connection failed, 5003); bus: NATS or
     JetStream is unreachable

environment:
  NJ_API           API base URL (default {DEFAULT_API}); --api wins
  NJ_PASSWORD      password for register/login instead of the prompt
  XDG_CONFIG_HOME  the login is kept in $XDG_CONFIG_HOME/natterjack/ (default ~/.config)
"""

Command = Callable[["Context", argparse.Namespace], Awaitable[None]]


class UsageError(Exception):
    """Bad arguments found after parsing (exit 1)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


class Context:
    """What every command needs: the output, the stored login, a client built from both."""

    def __init__(self, args: argparse.Namespace):
        self.out = Output(args.json)
        self.store = CredentialStore()
        stored = self.store.load() or {}
        self.api = args.api or os.environ.get("NJ_API") or stored.get("api") or DEFAULT_API

    def client(self, *, logged_in: bool = True) -> Client:
        credentials = self.store.credentials() if logged_in else None
        if logged_in and credentials is None:
            raise LoginRequired("not logged in")
        # A refresh token works once: keep every new pair, or the next run is logged out.
        return Client(self.api, credentials=credentials,
                      on_credentials=lambda fresh: self.store.save(fresh, api=self.api))


def build_parser() -> Parser:
    parser = Parser(prog="natterjack", description="Command line client for a natterjack server.",
                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", help=f"API base URL (env NJ_API; default {DEFAULT_API})")
    parser.add_argument("--json", action="store_true", help="print JSON instead of readable lines")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed
        return int(exit_.code or 0)
    try:
        trio.run(_run, args.run, args)
    except KeyboardInterrupt:
        return OK  # ^C is how `tail` ends
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one line and a code
        return _report(exc, args.command)
    return OK


async def _run(command: Command, args: argparse.Namespace) -> None:
    await command(Context(args), args)


def _report(exc: BaseException, command: str) -> int:
    error = _single(exc)
    print(f"natterjack: {_message(error, command)}", file=sys.stderr)
    return _exit_code(error)


def _exit_code(error: BaseException) -> int:
    if isinstance(error, UsageError):
        return USAGE
    if isinstance(error, LoginRequired):
        return AUTH
    if isinstance(error, Unavailable):
        return UNAVAILABLE
    return API_ERROR if isinstance(error, NatterjackClientError) else USAGE


def _message(error: BaseException, command: str) -> str:
    if isinstance(error, LoginRequired) and command not in ("login", "register", "bus"):
        return f"{error.message} (code {error.code}): run `natterjack login <username>`"
    if isinstance(error, NatterjackClientError | UsageError):
        return str(error)
    return f"unexpected {type(error).__name__}: {error}"


def _single(exc: BaseException) -> BaseException:
    """The one error inside nested exception groups (trio nurseries wrap them)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def add_command(commands: Any, name: str, run: Command, help: str) -> Parser:
    """A subcommand whose ``run`` the main program calls."""
    parser: Parser = commands.add_parser(name, help=help, description=help)
    parser.set_defaults(run=run)
    return parser
