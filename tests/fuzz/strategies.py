"""Hypothesis strategies for malformed input: arbitrary JSON, hostile scalars, and valid
payloads with fields dropped, added, retyped, blown up or nested deep.

Payloads are serialised with the standard library (``encode``), which writes what orjson
would refuse to produce: integers beyond 64 bits, non-ASCII escapes, deep nesting.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Integers at and beyond the edges the product cares about (JSON safe integers, 32/64 bits).
EDGE_INTS = st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**53 - 1, 2**53 + 1, 2**63 - 1,
                             2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, -(10**30)])
EDGE_FLOATS = st.sampled_from([0.5, -0.0, 1.0, 1e308, -1e308, 1e-300, 2.0**63, 1.5e19])
UNICODE = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
ODD_TEXT = st.sampled_from(["", " ", "\x00", "a.b", "*", ">", "..", "a b", "ä", "😀" * 3,
                            "\u202e", "'; DROP TABLE x; --", "%s", "{}", "null", "\ufeff",
                            "a" * 129, "A" * 65, "-" * 64])


def huge_text(min_bytes: int = 60_000, max_bytes: int = 70_000) -> st.SearchStrategy[str]:
    """One character repeated: around the 64 KiB frame cap, in one or two bytes a character."""
    return st.tuples(st.sampled_from(["x", "é"]), st.integers(min_bytes, max_bytes)).map(
        lambda pair: pair[0] * (pair[1] // len(pair[0].encode())))


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), EDGE_INTS, EDGE_FLOATS,
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                    UNICODE, ODD_TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def nested(value: Any, depth: int) -> Any:
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


# Around the contract's 64 levels, and around the 255 levels the bus encoder (orjson) stops at.
DEEP = st.builds(nested, SCALARS, st.one_of(st.integers(60, 70), st.integers(250, 400)))
HOSTILE = st.one_of(JSON, EDGE_INTS, EDGE_FLOATS, UNICODE, ODD_TEXT, huge_text(), DEEP)


def encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any], known: list[str]) -> dict[str, Any]:
    """``valid`` with one to three mutations: drop a field, add an unknown one, or give a
    field (known to the schema or present) a hostile value."""
    payload = dict(valid)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["drop", "add", "retype", "retype"]))
        if kind == "drop" and payload:
            payload.pop(draw(st.sampled_from(sorted(payload))))
        elif kind == "add":
            payload[draw(st.text(min_size=1, max_size=12))] = draw(JSON)
        elif names := sorted(set(known) | set(payload)):
            payload[draw(st.sampled_from(names))] = draw(HOSTILE)
    return payload


# Raw texts that are not JSON or not the JSON a parser expects.
BROKEN_JSON = st.one_of(
    st.text(max_size=60),
    st.builds(lambda t, n: t[:n], st.just('{"type":"send_message","id":"x","chat_id":"c","content":"hi"}'),
              st.integers(0, 60)),
    st.sampled_from(["", "null", "[]", "1", '"ping"', "{", "}", '{"type":}', "[NaN]", '{"a":1e400}',
                     '{"type":"ping","id":"\\ud800"}', '{"type":"ping"}{"type":"ping"}', "\ufeff{}",
                     '{"type":"ping",}', "{'type':'ping'}", '{"type":"ping","type":"ack"}']),
    st.integers(1025, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1025, 3000).map(lambda n: '{"type":"ping","x":' + "[" * n + "]" * n + "}"),
)


def from_schema(schema: dict[str, Any], real: dict[str, list[Any]]) -> st.SearchStrategy[Any]:
    """Values that pass ``schema`` (the subset of JSON Schema our contracts use), hostile
    where the schema lets them be: edge integers, any Unicode, any JSON where untyped.
    A property named in ``real`` also draws from those real values (ids that exist)."""
    for key in ("oneOf", "anyOf"):
        if schema.get(key):
            return st.one_of(*[from_schema({**schema, key: None, **v}, real) for v in schema[key]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kinds = schema.get("type")
    if isinstance(kinds, list):
        return st.one_of(*[from_schema({**schema, "type": kind}, real) for kind in kinds])
    maker = _MAKERS.get(kinds) if isinstance(kinds, str) else None
    return maker(schema, real) if maker else HOSTILE


def _string(schema: dict[str, Any], _: dict[str, list[Any]]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength", 300)
    text = (st.from_regex(schema["pattern"].removeprefix("^").removesuffix("$"), fullmatch=True)
            if "pattern" in schema
            else st.text(min_size=low, max_size=min(high, 300)))
    return text.filter(lambda s: low <= len(s) <= high)


def _integer(schema: dict[str, Any], _: dict[str, list[Any]]) -> st.SearchStrategy[int]:
    low, high = schema.get("minimum", -(2**63)), schema.get("maximum", 2**63 - 1)
    edges = [v for v in (low, low + 1, 2**31 - 1, 2**31, 2**53 - 1, high) if low <= v <= high]
    return st.one_of(st.integers(low, high), st.sampled_from(edges))


def _array(schema: dict[str, Any], real: dict[str, list[Any]]) -> st.SearchStrategy[list[Any]]:
    items = from_schema(schema.get("items", {}), real)
    return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 5), 5))


@st.composite
def _object(draw: st.DrawFn, schema: dict[str, Any], real: dict[str, list[Any]]) -> dict[str, Any]:
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    out = {}
    for name, sub in props.items():
        if name in required or draw(st.booleans()):
            pool = [st.sampled_from(real[name])] * 3 if real.get(name) else []
            out[name] = draw(st.one_of(*pool, from_schema(sub, real)))
    return out


_MAKERS: dict[str, Any] = {
    "string": _string, "integer": _integer, "array": _array, "object": _object,
    "number": _integer, "boolean": lambda s, r: st.booleans(),
    "null": lambda s, r: st.none(),
}
