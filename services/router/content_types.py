"""Content types a message may carry, each a versioned JSON Schema from ``proto/``.

Built-ins live in ``proto/schemas/content/<name>.v<version>.json`` and are compiled once.
"""

from __future__ import annotations

import functools
from typing import Any

from libs import contracts

from .errors import ContentInvalid, UnknownContentType

BUILTIN = {"text": 1, "image": 1, "file": 1, "location": 1, "system": 1}


@functools.cache
def _builtin_validator(name: str, version: int) -> contracts.Validator:
    return contracts.validator(f"schemas/content/{name}.v{version}.json")


def validate(content_type: str, version: int | None, content: Any) -> int:
    """Check ``content`` against its type's schema; returns the version used (latest by default)."""
    latest = BUILTIN.get(content_type)
    if latest is None:
        raise UnknownContentType(f"unknown content type {content_type!r}",
                                 details={"path": "$.content_type"})
    version = latest if version is None else version
    if not 1 <= version <= latest:
        raise UnknownContentType(f"{content_type} has no version {version}",
                                 details={"path": "$.content_version"})
    validator = _builtin_validator(content_type, version)
    try:
        contracts.check(validator, {"content": content}["content"], code=ContentInvalid.code,
                        what=f"content fails {content_type} v{version}")
    except contracts.NatterjackError as exc:
        path = "$.content" + (exc.details or {}).get("path", "$")[1:]
        raise ContentInvalid(exc.message.replace("$", "$.content", 1), details={"path": path}) from None
    return version
