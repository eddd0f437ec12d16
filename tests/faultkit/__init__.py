"""Fault injection for tests: a switchable TCP proxy, a redis-server of the test's own and a
nats-server that can be killed and restarted on the same port and store."""

from .natsd import RestartableNats
from .proxy import DOWN, HANG, UP, Proxy
from .redisd import RedisServer

__all__ = ["DOWN", "HANG", "UP", "Proxy", "RedisServer", "RestartableNats"]
