"""The gateway's Redis keys: the presence registry (user -> device -> gateway, connection).

Values are ``libs.presence.encode(gateway, connection, ts)``. Refreshing rewrites the
timestamp, so readers can tell a live entry from one a crashed gateway left behind; both
refresh and removal act only while the entry still names this connection, so a device
that reconnected through another gateway is never overwritten or wiped by the old one.
"""

from __future__ import annotations

from typing import Any

from libs import presence as codec
from libs.cache import Cache

# KEYS[1] hash, ARGV[1] device, ARGV[2] "<gateway>|<connection>|", ARGV[3] new value or ''
_IF_OURS = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and string.sub(current, 1, string.len(ARGV[2])) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then return redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return redis.call('EXPIRE', KEYS[1], ARGV[4])
"""


class Presence:
    def __init__(self, cache: Cache, gateway_id: str, ttl_s: float):
        self.cache = cache
        self.gateway_id = gateway_id
        self.ttl_s = ttl_s
        self._if_ours = cache.client.register_script(_IF_OURS)

    def _owner(self, connection_id: str) -> str:
        return f"{self.gateway_id}|{connection_id}|"

    async def register(self, user_id: str, device_id: str, connection_id: str,
                       now_ms: int) -> dict[str, str]:
        """Claim the device for this connection (a newer connection always wins) and return
        the user's live devices then, in one round trip."""
        key = self.cache.keys.presence(user_id)
        value = codec.encode(self.gateway_id, connection_id, now_ms)

        def build(pipe: Any) -> None:
            pipe.hset(key, device_id, value)
            pipe.expire(key, int(self.ttl_s * 2))
            pipe.hgetall(key)
        row = (await self.cache.pipeline(build))[-1]
        return codec.fresh_devices(row or {}, self.ttl_s, now_ms)

    async def refresh(self, entries: list[tuple[str, str, str]], now_ms: int) -> None:
        """Re-confirm (user, device, connection) for every local socket still owning its entry."""
        if not entries:
            return

        def run(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for user_id, device_id, connection_id in entries:
                self._if_ours(keys=[self.cache.keys.presence(user_id)], client=pipe,
                              args=[device_id, self._owner(connection_id),
                                    codec.encode(self.gateway_id, connection_id, now_ms),
                                    int(self.ttl_s * 2)])
            pipe.execute()
        await self.cache.run(run)

    async def unregister(self, user_id: str, device_id: str, connection_id: str,
                         now_ms: int) -> dict[str, str]:
        """Stamp the user's last_seen, remove the device while the entry still names this
        connection, and return the user's live devices then, in one round trip. last_seen
        goes first: a reader between the steps still sees the user online."""
        key = self.cache.keys.presence(user_id)

        def build(pipe: Any) -> None:
            pipe.set(self.cache.keys.last_seen(user_id), now_ms)
            self._if_ours(keys=[key], args=[device_id, self._owner(connection_id), "", 0], client=pipe)
            pipe.hgetall(key)
        row = (await self.cache.pipeline(build))[-1]
        return codec.fresh_devices(row or {}, self.ttl_s, now_ms)

    async def status(self, user_id: str, now_ms: int) -> dict[str, Any]:
        """{user_id, status, last_seen_ts}: online while any device entry is fresh."""
        def read(pipe: Any) -> None:
            pipe.hgetall(self.cache.keys.presence(user_id))
            pipe.get(self.cache.keys.last_seen(user_id))
        entries, last_seen = await self.cache.pipeline(read)
        fresh = codec.fresh_devices(entries or {}, self.ttl_s, now_ms)
        stamps = [codec.decode(v)[2] for v in (entries or {}).values()]
        if fresh:
            return {"user_id": user_id, "status": "online", "last_seen_ts": now_ms}
        seen = max([int(last_seen or 0), *stamps]) if stamps or last_seen else None
        return {"user_id": user_id, "status": "offline", "last_seen_ts": seen}
