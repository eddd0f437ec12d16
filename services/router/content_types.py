"""Content types a message may carry, each a versioned JSON Schema.

Built-ins live in ``proto/schemas/content/<name>.v<version>.json``. Custom types are
registered by users (``router_message_types``): any user may register a new name, only
its registrant adds versions, each version is latest + 1, and older versions stay valid
to send with ``content_version``. Compiled validators are cached in-process; a miss
(unknown name or version) reloads that name from MySQL, so a type registered through
another router replica is found on its first use here.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import orjson
import trio

from libs import contracts, ids

from .domain import require_id
from .errors import BadRequest, ContentInvalid, NotAllowed, TypeConflict, UnknownContentType

BUILTIN = {"text": 1, "image": 1, "file": 1, "location": 1, "system": 1}
NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MAX_SCHEMA_BYTES = 64 * 1024
LATEST_FRESH_S = 5.0  # how long a custom type's "latest version" is trusted without a reload


@functools.cache
def _builtin_validator(name: str, version: int) -> contracts.Validator:
    return contracts.validator(f"schemas/content/{name}.v{version}.json")


def builtin_schema(name: str, version: int) -> dict[str, Any]:
    return contracts.load_json(f"schemas/content/{name}.v{version}.json")


def _remote_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) and not node["$ref"].startswith("#") else []
        return found + [ref for value in node.values() for ref in _remote_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _remote_refs(value)]
    return []


def compile_custom(schema: Any) -> contracts.Validator:
    """Compile a registered schema: a JSON object, local refs only, at most 64 KiB."""
    if not isinstance(schema, dict):
        raise BadRequest("schema must be a JSON object", details={"path": "$.schema"})
    if len(orjson.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise BadRequest("schema is larger than 64 KiB", details={"path": "$.schema"})
    if refs := _remote_refs(schema):
        raise BadRequest("schema may only use local $ref (#/...)", details={"path": "$.schema", "refs": refs[:5]})
    try:
        return contracts.compile_schema(schema)
    except Exception as exc:  # noqa: BLE001 - any compile failure is the caller's schema
        raise BadRequest("schema does not compile", details={"path": "$.schema", "error": str(exc)[:500]}) from None


def decide_registration(latest: dict[str, Any] | None, registrant: str, version: int | None,
                        schema_json: str) -> tuple[int, bool]:
    """(version, insert?) for a registration, given the latest stored row (pure)."""
    if latest is None:
        if version not in (None, 1):
            raise BadRequest("a new type starts at version 1", details={"path": "$.version"})
        return 1, True
    if latest["registrant_id"] != registrant:
        raise NotAllowed("only the type's registrant adds versions")
    current, same = int(latest["version"]), latest["schema_json"] == schema_json
    if version is None:
        return (current, False) if same else (current + 1, True)
    if version == current:
        if same:
            return current, False
        raise TypeConflict(f"version {version} exists with another schema", details={"path": "$.version"})
    if version != current + 1:
        raise BadRequest(f"the next version is {current + 1}", details={"path": "$.version"})
    return version, True


def registration(payload: dict[str, Any]) -> tuple[str, int | None, Any]:
    """(name, version?, schema) of a register request, shape-checked."""
    name = payload.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise BadRequest("name must match ^[a-z][a-z0-9_.-]{0,63}$", details={"path": "$.name"})
    if name in BUILTIN:
        raise NotAllowed(f"{name} is a built-in type")
    version = payload.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or not 1 <= version <= 2**31 - 1):
        raise BadRequest("version must be a positive integer", details={"path": "$.version"})
    return name, version, payload.get("schema")


def type_object(row: dict[str, Any], schema: Any, builtin: bool) -> dict[str, Any]:
    return {"name": row["name"], "version": int(row["version"]), "registrant_id": row.get("registrant_id"),
            "schema": schema, "builtin": builtin, "created_ts": row.get("created_ts")}


def check(validator: contracts.Validator, content_type: str, version: int, content: Any) -> None:
    try:
        contracts.check(validator, content, code=ContentInvalid.code,
                        what=f"content fails {content_type} v{version}")
    except contracts.NatterjackError as exc:
        path = "$.content" + (exc.details or {}).get("path", "$")[1:]
        raise ContentInvalid(exc.message.replace("$", "$.content", 1), details={"path": path}) from None


class ContentTypes:
    """Validation against built-in and registered types, with an in-process cache."""

    def __init__(self, storage: Any):
        self.storage = storage
        self._validators: dict[tuple[str, int], contracts.Validator] = {}
        self._latest: dict[str, tuple[int, float]] = {}  # name -> (latest version, loaded at)

    async def validate(self, content_type: str, version: int | None, content: Any) -> int:
        """Check ``content``; returns the version used (latest when not given)."""
        if content_type in BUILTIN:
            version = BUILTIN[content_type] if version is None else version
            if not 1 <= version <= BUILTIN[content_type]:
                raise UnknownContentType(f"{content_type} has no version {version}",
                                         details={"path": "$.content_version"})
            check(_builtin_validator(content_type, version), content_type, version, content)
            return version
        version = await self._resolve(content_type, version)
        check(self._validators[(content_type, version)], content_type, version, content)
        return version

    async def _resolve(self, name: str, version: int | None) -> int:
        known = self._latest.get(name)
        stale = known is None or trio.current_time() - known[1] > LATEST_FRESH_S
        if (version is None and stale) or (version is not None and (name, version) not in self._validators):
            await self.load(name)
            known = self._latest.get(name)
        if known is None:
            raise UnknownContentType(f"unknown content type {name!r}", details={"path": "$.content_type"})
        version = known[0] if version is None else version
        if (name, version) not in self._validators:
            raise UnknownContentType(f"{name} has no version {version}", details={"path": "$.content_version"})
        return version

    async def load(self, name: str) -> None:
        rows = await self.storage.type_versions(name)
        for row in rows:
            key = (name, int(row["version"]))
            if key not in self._validators:
                self._validators[key] = contracts.compile_schema(orjson.loads(row["schema_json"]))
        if rows:
            self._latest[name] = (int(rows[-1]["version"]), trio.current_time())

    async def register(self, payload: dict[str, Any]) -> dict[str, Any]:
        """im.router.types.register: {registrant_id, name, version?, schema}."""
        registrant = require_id(payload, "registrant_id")
        name, version, schema = registration(payload)
        compile_custom(schema)
        schema_json = orjson.dumps(schema).decode()

        def decide(latest: dict[str, Any] | None) -> tuple[int, bool, dict[str, Any]]:
            number, insert = decide_registration(latest, registrant, version, schema_json)
            if not insert and latest is not None:
                return number, False, latest
            return number, True, {"name": name, "version": number, "registrant_id": registrant,
                                  "schema_json": schema_json}
        number, created, row = await self.storage.register_type(name, decide, ids.now_ms())
        await self.load(name)
        return {**type_object(row, orjson.loads(row["schema_json"]), False), "version": number,
                "created": created}

    async def list(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """im.router.types.list: built-ins first, then every registered version."""
        types = [type_object({"name": name, "version": v, "registrant_id": None, "created_ts": None},
                             builtin_schema(name, v), True)
                 for name, latest in BUILTIN.items() for v in range(1, latest + 1)]
        types += [type_object(row, orjson.loads(row["schema_json"]), False)
                  for row in await self.storage.type_versions()]
        return {"types": types}
