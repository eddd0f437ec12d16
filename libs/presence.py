"""Reading the presence registry the gateways write (one Redis hash per user).

Each field is a device; its value ``<gateway_id>|<connection_id>|<ts_ms>`` names the
gateway holding the device's socket and when that gateway last confirmed it. A value
older than the TTL is stale: the gateway that wrote it stopped refreshing (crashed), so
the device counts as offline even while other devices of the user keep the key alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .cache import Cache


def encode(gateway_id: str, connection_id: str, ts_ms: int) -> str:
    return f"{gateway_id}|{connection_id}|{ts_ms}"


def decode(value: bytes | str) -> tuple[str, str, int]:
    text = value.decode() if isinstance(value, bytes) else value
    gateway_id, _, rest = text.partition("|")
    connection_id, _, ts = rest.partition("|")
    return gateway_id, connection_id, int(ts) if ts.isdigit() else 0


def fresh_devices(entries: dict[Any, Any], ttl_s: float, now_ms: int) -> dict[str, str]:
    """{device: gateway_id} of the entries confirmed within the TTL."""
    out = {}
    for device, value in entries.items():
        gateway_id, _, ts = decode(value)
        if now_ms - ts <= ttl_s * 1000:
            out[device.decode() if isinstance(device, bytes) else device] = gateway_id
    return out


async def online_devices(cache: Cache, user_ids: list[str], ttl_s: float, *,
                         also: Callable[[Any], None] | None = None,
                         batched: bool = False) -> dict[str, dict[str, str]]:
    """{user: {device: gateway_id}} for the users with at least one fresh device.

    ``also`` queues more commands on the same pipeline (one round trip); their results
    are dropped, their errors raised. ``batched``: share the round trip with concurrent
    callers (:meth:`Cache.batched`)."""
    def build(pipe: Any) -> None:
        for user_id in user_ids:
            pipe.hgetall(cache.keys.presence(user_id))
        if also is not None:
            also(pipe)
    rows = (await (cache.batched(build) if batched else cache.pipeline(build)))[:len(user_ids)]
    now_ms = int(time.time() * 1000)
    result = {}
    for user_id, row in zip(user_ids, rows, strict=True):
        devices = fresh_devices(row, ttl_s, now_ms) if row else {}
        if devices:
            result[user_id] = devices
    return result


def group_targets(presence: dict[str, dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """{user: {device: gateway}} -> {gateway: [{user_id, device_id}, …]}: one publish per gateway."""
    by_gateway: dict[str, list[dict[str, str]]] = {}
    for user_id, devices in presence.items():
        for device_id, gateway in devices.items():
            by_gateway.setdefault(gateway, []).append({"user_id": user_id, "device_id": device_id})
    return by_gateway
