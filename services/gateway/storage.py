"""The gateway's Redis keys: the presence registry (user -> device -> gateway, connection)."""

from __future__ import annotations

from typing import Any

from libs.cache import Cache

# Remove a device's entry only if it still names this connection, so a quick reconnect
# through another gateway is not wiped by the old connection's cleanup.
_COMPARE_AND_DELETE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


def presence_value(gateway_id: str, connection_id: str) -> str:
    return f"{gateway_id}|{connection_id}"


class Presence:
    def __init__(self, cache: Cache, ttl_s: int):
        self.cache = cache
        self.ttl_s = ttl_s
        self._cad = cache.client.register_script(_COMPARE_AND_DELETE)

    async def register(self, user_id: str, device_id: str, value: str) -> None:
        key = self.cache.keys.presence(user_id)

        def build(pipe: Any) -> None:
            pipe.hset(key, device_id, value)
            pipe.expire(key, self.ttl_s)
        await self.cache.pipeline(build)

    async def refresh(self, entries: list[tuple[str, str, str]]) -> None:
        """Re-assert (user, device, value) for every local socket and push TTLs forward."""
        def build(pipe: Any) -> None:
            for user_id, device_id, value in entries:
                key = self.cache.keys.presence(user_id)
                pipe.hset(key, device_id, value)
                pipe.expire(key, self.ttl_s)
        if entries:
            await self.cache.pipeline(build)

    async def unregister(self, user_id: str, device_id: str, value: str) -> None:
        key = self.cache.keys.presence(user_id)
        await self.cache.run(lambda r: self._cad(keys=[key], args=[device_id, value], client=r))
