"""Signing-key rotation: tokens of the previous key keep verifying while it is listed."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from libs import rpc, tokens
from libs.bus import Bus
from libs.errors import NatterjackError, Unauthenticated
from services.auth import app
from services.auth.config import load

PASSWORD = "correct horse battery"


async def call(bus: Bus, verb: str, payload: dict[str, Any]) -> Any:
    return await rpc.call(bus, f"im.auth.{verb}", payload, timeout=10)


def _key_file(tmp_path: Path, name: str) -> tuple[str, str]:
    """(path of a new private key file, its public PEM)."""
    pem = tokens.generate_private_key_pem()
    path = tmp_path / f"{name}.pem"
    path.write_text(pem)
    return str(path), tokens.public_pem(pem)


async def _with_auth(env: dict[str, str], scenario) -> Any:
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, load(env))
        try:
            return await scenario(runtime.bus)
        finally:
            runtime.stopping.set()


async def _jwks_verifier(bus: Bus) -> tuple[tokens.Verifier, list[str]]:
    keys = (await call(bus, "jwks", {}))["keys"]
    return tokens.Verifier({k["kid"]: k["public_key_pem"] for k in keys}), [k["kid"] for k in keys]


def _forged(private_pem: str, kid: str, grant: dict[str, Any]) -> str:
    now = int(time.time())
    claims = tokens.Claims(grant["user_id"], grant["device_id"], grant["session_id"], now + 600)
    return tokens.sign(private_pem, kid, claims, now)


async def test_rotated_key_tokens_verify_while_listed(common_env, tmp_path):
    old_path, old_public = _key_file(tmp_path, "old")
    new_path, _ = _key_file(tmp_path, "new")
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"k1": old_public}))
    name = f"Rot_{secrets.token_hex(4)}"

    async def before(bus: Bus) -> dict[str, Any]:
        await call(bus, "register", {"username": name, "password": PASSWORD})
        return await call(bus, "login", {"username": name, "password": PASSWORD})
    old_grant = await _with_auth(common_env("auth", NJ_AUTH_SIGNING_KEY_FILE=old_path,
                                            NJ_AUTH_KEY_ID="k1"), before)
    assert tokens.Verifier.kid_of(old_grant["access_token"]) == "k1"

    async def after(bus: Bus) -> None:
        verifier, kids = await _jwks_verifier(bus)
        assert kids == ["k2", "k1"]  # the signing key first
        assert verifier.verify(old_grant["access_token"]).session_id == old_grant["session_id"]
        assert (await call(bus, "verify", {"token": old_grant["access_token"]}))["live"]
        new_grant = await call(bus, "login", {"username": name, "password": PASSWORD})
        assert tokens.Verifier.kid_of(new_grant["access_token"]) == "k2"
        assert verifier.verify(new_grant["access_token"]).user_id == new_grant["user_id"]
        stranger = tokens.generate_private_key_pem()
        for forged in (_forged(stranger, "k3", new_grant), _forged(stranger, "k1", new_grant),
                       _forged(stranger, "k2", new_grant)):
            with pytest.raises(Unauthenticated):
                verifier.verify(forged)
            with pytest.raises(NatterjackError) as caught:
                await call(bus, "verify", {"token": forged})
            assert caught.value.code == 4010
    await _with_auth(common_env("auth", NJ_AUTH_SIGNING_KEY_FILE=new_path, NJ_AUTH_KEY_ID="k2",
                                NJ_AUTH_EXTRA_PUBLIC_KEYS_FILE=str(extra)), after)

    async def dropped(bus: Bus) -> None:
        verifier, kids = await _jwks_verifier(bus)
        assert kids == ["k2"]
        with pytest.raises(Unauthenticated):
            verifier.verify(old_grant["access_token"])
        with pytest.raises(NatterjackError) as caught:
            await call(bus, "verify", {"token": old_grant["access_token"]})
        assert caught.value.code == 4010
    await _with_auth(common_env("auth", NJ_AUTH_SIGNING_KEY_FILE=new_path, NJ_AUTH_KEY_ID="k2"),
                     dropped)
