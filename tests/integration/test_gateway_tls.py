"""A gateway with NJ_GATEWAY_TLS_CERT/KEY speaks https:// and wss:// only, with a
self-signed certificate made here and trusted by the test's clients."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from trio_websocket import open_websocket_url

from libs.natsd import free_port
from tests.e2e.client import PASSWORD, next_frame, register_and_login, send
from tools.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
# A plain WebSocket client gets no TLS answer and is dropped when its handshake time is up.
HANDSHAKE_TIMEOUT_S = 2.0


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1 and localhost, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "gateway.crt", directory / "gateway.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_gateway(stack: Stack, tmp_path_factory) -> Iterator[tuple[int, int, ssl.SSLContext]]:
    """A second gateway with TLS on both ports: (http port, ws port, client context)."""
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    http_port, ws_port = free_port(), free_port()
    stack.ports["gateway_tls"] = http_port
    stack.start("gateway", name="gateway_tls", env={
        "NJ_GATEWAY_HTTP_PORT": str(http_port), "NJ_GATEWAY_WS_PORT": str(ws_port),
        "NJ_GATEWAY_TLS_CERT": str(cert), "NJ_GATEWAY_TLS_KEY": str(key),
        "NJ_GATEWAY_HANDSHAKE_TIMEOUT_S": str(HANDSHAKE_TIMEOUT_S)})
    context = ssl.create_default_context(cafile=str(cert))
    _wait_ready(f"https://127.0.0.1:{http_port}/ready", context, stack)
    yield http_port, ws_port, context
    stack.stop("gateway_tls")


def _wait_ready(url: str, context: ssl.SSLContext, stack: Stack, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(url, verify=context, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"TLS gateway not ready: {stack.tail('gateway_tls')}")


async def test_https_and_wss_with_a_trusted_certificate(tls_gateway):
    http_port, ws_port, context = tls_gateway
    base = f"https://127.0.0.1:{http_port}"
    async with httpx.AsyncClient(base_url=base, verify=context, timeout=30) as http:
        ann = await register_and_login(http, f"tls_{secrets.token_hex(4)}")
        bob = await register_and_login(http, f"tls_{secrets.token_hex(4)}")
        chat = await http.post("/api/v1/chats", json={"type": "direct", "members": [bob.user_id]},
                               headers=ann.auth)
        assert chat.status_code == 201, chat.text
    url = f"wss://127.0.0.1:{ws_port}/ws?token={ann.access_token}"
    async with open_websocket_url(url, ssl_context=context) as ws:
        await next_frame(ws, "sync_done")
        await send(ws, {"type": "send_message", "id": "t1", "chat_id": chat.json()["chat_id"],
                        "content": "over TLS"})
        ack = await next_frame(ws, "message_ack")
        assert ack["seq"] >= 1


async def test_plain_connections_fail(tls_gateway):
    http_port, ws_port, _ = tls_gateway
    with pytest.raises(httpx.HTTPError):
        async with httpx.AsyncClient(timeout=5) as http:
            await http.post(f"http://127.0.0.1:{http_port}/api/v1/auth/login",
                            json={"username": "nobody", "password": PASSWORD})
    # A plain WebSocket upgrade gets no answer, and the socket is closed.
    stream = await trio.open_tcp_stream("127.0.0.1", ws_port)
    await stream.send_all(b"GET /ws?token=x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          b"Sec-WebSocket-Version: 13\r\n\r\n")
    answer = b""
    with trio.fail_after(HANDSHAKE_TIMEOUT_S + 5):
        while chunk := await stream.receive_some():
            answer += chunk
    assert b"101" not in answer and b"HTTP/1.1" not in answer


async def test_an_untrusted_certificate_is_refused(tls_gateway):
    http_port, ws_port, _ = tls_gateway
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=5) as http:  # system CAs only
            await http.get(f"https://127.0.0.1:{http_port}/health")
    tcp = await trio.open_tcp_stream("127.0.0.1", ws_port)
    tls = trio.SSLStream(tcp, ssl.create_default_context(), server_hostname="127.0.0.1")
    with pytest.raises(trio.BrokenResourceError) as caught, trio.fail_after(10):
        await tls.do_handshake()
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
