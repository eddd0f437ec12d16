"""The contracts in ``proto/``, loaded (never copied) and compiled once.

``NJ_PROTO_DIR`` points elsewhere when the code is installed without the repository
(container images copy ``proto/`` next to the code).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from .errors import NatterjackError

Validator = Callable[[Any], Any]
# Deepest JSON a client's frame or body, and a stored content or metadata, may nest: the bus
# encoder (orjson) stops at 255 levels, and a stored event travels inside a few more
# (delivery envelopes, history pages, HTTP answers).
MAX_DEPTH = 64


def proto_dir() -> Path:
    configured = os.environ.get("NJ_PROTO_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parent.parent / "proto"


@functools.cache
def load_json(relative: str) -> Any:
    return orjson.loads((proto_dir() / relative).read_bytes())


@functools.cache
def validator(relative: str) -> Validator:
    """A compiled validator for ``proto/<relative>`` (e.g. ``schemas/ws/client/ack.json``)."""
    return fastjsonschema.compile(load_json(relative))


def compile_schema(schema: dict[str, Any]) -> Validator:
    return fastjsonschema.compile(schema)


def check(validate: Validator, value: Any, *, code: int, what: str) -> Any:
    """Validate ``value``; raise NatterjackError(code) naming the failing JSON path."""
    try:
        return validate(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path[1:])
        raise NatterjackError(f"{what}: {path} {exc.message.removeprefix('data').strip()}",
                              code=code, details={"path": path}) from None


def nested_deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests arrays/objects more than ``limit`` levels (iteratively: no recursion)."""
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if level > limit:
            return True
        pending.extend((child, level + 1) for child in children)
    return False
