"""KeyRing: tokens verified locally; a key not known yet is fetched once, rate limited."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import trio

from libs import tokens
from libs.errors import Unauthenticated
from services.gateway.keys import KeyRing


class Auth:
    """Answers im.auth.jwks with the keys it holds now."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.asked = 0

    async def request(self, subject: str, data: bytes, *, timeout: float, **_: Any) -> Any:
        assert subject == "im.auth.jwks"
        self.asked += 1
        await trio.lowlevel.checkpoint()
        keys = [{"kid": kid, "public_key_pem": pem} for kid, pem in self.keys.items()]
        return type("Reply", (), {"data": orjson.dumps({"ok": {"keys": keys}}),
                                  "is_no_responders": False})()


def _token(private: str, kid: str, expires_in: int = 3600) -> str:
    now = int(time.time())
    return tokens.sign(private, kid, tokens.Claims("u1", "d1", "s1", now + expires_in), now - 10)


async def test_a_new_key_is_fetched_once_then_tokens_verify_locally(autojump_clock: Any) -> None:
    auth, old, new = Auth(), tokens.generate_private_key_pem(), tokens.generate_private_key_pem()
    auth.keys["k1"] = tokens.public_pem(old)
    ring = KeyRing(auth, 1.0)  # type: ignore[arg-type]
    await ring.refresh()
    await trio.sleep(10)
    assert (await ring.verify(_token(old, "k1"))).user_id == "u1"
    assert auth.asked == 1
    auth.keys["k2"] = tokens.public_pem(new)  # rolled out after we fetched
    assert (await ring.verify(_token(new, "k2"))).device_id == "d1"
    assert auth.asked == 2
    with pytest.raises(Unauthenticated):
        await ring.verify(_token(new, "k3"))  # unknown and asked just now: not asked again
    assert auth.asked == 2
    with pytest.raises(Unauthenticated):
        await ring.verify("not.a.token")
    ring.revoked_sessions.add("s1")
    with pytest.raises(Unauthenticated):
        await ring.verify(_token(old, "k1"))
