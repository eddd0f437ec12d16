"""Fault injection for tests: a switchable TCP proxy and a redis-server of the test's own."""

from .proxy import DOWN, HANG, UP, Proxy
from .redisd import RedisServer

__all__ = ["DOWN", "HANG", "UP", "Proxy", "RedisServer"]
