"""The fault kit itself: the proxy passes, cuts, refuses and holds; the own Redis restarts."""

from __future__ import annotations

import socket
import threading

import pytest
import redis

from tests.faultkit import Proxy, RedisServer

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def echo_port():
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    serving = threading.Thread(target=serve, daemon=True)
    serving.start()
    yield server.getsockname()[1]
    stop.set()
    serving.join(5)  # before the close: an accept on a closed socket fails in the thread
    server.close()


def roundtrip(port: int, payload: bytes = b"ping", timeout: float = 2) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        try:
            conn.sendall(payload)
            return conn.recv(4096)
        except ConnectionResetError:  # closed by the proxy before or after our bytes
            return b""


def roundtrip_held(conn: socket.socket) -> bytes:
    try:
        return conn.recv(10)
    except ConnectionResetError:
        return b""


def test_the_proxy_passes_cuts_and_comes_back(echo_port: int) -> None:
    with Proxy(echo_port) as proxy:
        assert roundtrip(proxy.port) == b"ping"
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        held.sendall(b"a")
        assert held.recv(10) == b"a"
        proxy.down()
        assert roundtrip_held(held) == b""  # the open connection was cut
        assert roundtrip(proxy.port) == b""  # a new one is closed at once
        proxy.up()
        assert roundtrip(proxy.port) == b"ping"
        held.close()


def test_a_hanging_proxy_holds_bytes_until_it_is_up_again(echo_port: int) -> None:
    with Proxy(echo_port) as proxy:
        proxy.hang()
        conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.3)
        conn.sendall(b"late")
        with pytest.raises(TimeoutError):
            conn.recv(10)
        proxy.up()
        conn.settimeout(2)
        assert conn.recv(10) == b"late"
        conn.close()


def test_our_own_redis_stops_restarts_and_flushes() -> None:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=1)
        client.set("k", "v")
        server.stop()
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        server.start()
        assert client.get("k") is None  # nothing kept on disk
        client.set("k", "v")
        server.flushall()
        assert client.get("k") is None
        client.close()
