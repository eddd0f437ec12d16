"""types register / types list: custom content types (versioned JSON Schemas)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import Context


def add_commands(commands: Any) -> None:
    from ._app import Parser, add_command
    types: Parser = commands.add_parser("types", help="custom content types")
    actions = types.add_subparsers(dest="action", metavar="<action>", required=True)
    register = add_command(actions, "register", run_register, "register a type or a new version")
    register.add_argument("name")
    register.add_argument("schema", help="a JSON Schema: a file name, or the JSON itself")
    register.add_argument("--version", type=int)
    add_command(actions, "list", run_list, "every version of every type, built-ins included")


def read_schema(text: str) -> dict[str, Any]:
    from ._app import UsageError
    path = Path(text)
    source = path.read_text() if not text.lstrip().startswith("{") and path.is_file() else text
    try:
        schema = json.loads(source)
    except ValueError as exc:
        raise UsageError(f"schema is neither a JSON file nor JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise UsageError("schema must be a JSON object")
    return schema


async def run_register(context: Context, args: argparse.Namespace) -> None:
    schema = read_schema(args.schema)
    async with context.client() as client:
        created = await client.register_message_type(args.name, schema, args.version)
    verb = "registered" if created.created else "already registered:"
    context.out.emit(created.raw, f"{verb} {created.name} version {created.version}")


async def run_list(context: Context, args: argparse.Namespace) -> None:
    async with context.client() as client:
        types = await client.message_types()
    rows = [{**t.raw, "builtin": "yes" if t.builtin else ""} for t in types]
    context.out.table(rows, ["name", "version", "builtin", "registrant_id"],
                      {"types": [t.raw for t in types]})
