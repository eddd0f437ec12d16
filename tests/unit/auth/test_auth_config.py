"""auth's configuration fails fast, naming the variable, on missing or bad keys."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from libs import tokens
from libs.config import ConfigError
from services.auth.config import load


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _config_error(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load(environ)
    return str(caught.value)


def test_missing_signing_key_fails_fast_unless_dev_generation_is_on():
    assert "NJ_AUTH_SIGNING_KEY_FILE is required" in _config_error({})
    config = load({"NJ_AUTH_DEV_GENERATE_KEY": "true"})
    assert config.keys.generated and config.keys.kid == "k1"
    assert config.common.http_port == 8091
    assert (config.access_token_ttl_s, config.refresh_token_ttl_s) == (900, 30 * 86400)
    argon2 = config.argon2
    assert (argon2.time_cost, argon2.memory_kib, argon2.parallelism) == (3, 65536, 1)


def test_signing_key_file_is_loaded(tmp_path):
    pem = tokens.generate_private_key_pem()
    config = load({"NJ_AUTH_SIGNING_KEY_FILE": _write(tmp_path, "k.pem", pem),
                   "NJ_AUTH_KEY_ID": "2024-a"})
    assert not config.keys.generated
    assert config.keys.public_keys == {"2024-a": tokens.public_pem(pem)}
    assert "PRIVATE" not in repr(config)


def test_unreadable_or_invalid_signing_keys_are_rejected(tmp_path):
    missing = _config_error({"NJ_AUTH_SIGNING_KEY_FILE": str(tmp_path / "nope.pem")})
    assert "NJ_AUTH_SIGNING_KEY_FILE" in missing and "unreadable" in missing
    garbage = _config_error({"NJ_AUTH_SIGNING_KEY_FILE": _write(tmp_path, "g.pem", "not a key")})
    assert "not an unencrypted PEM private key" in garbage
    ec_pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    wrong_type = _config_error({"NJ_AUTH_SIGNING_KEY_FILE": _write(tmp_path, "ec.pem", ec_pem)})
    assert "not an Ed25519 key" in wrong_type


def test_extra_public_keys_are_served_and_validated(tmp_path):
    old_public = tokens.public_pem(tokens.generate_private_key_pem())
    extra = _write(tmp_path, "extra.json", json.dumps({"k0": old_public}))
    config = load({"NJ_AUTH_DEV_GENERATE_KEY": "true", "NJ_AUTH_EXTRA_PUBLIC_KEYS_FILE": extra})
    assert [entry["kid"] for entry in config.keys.jwks()] == ["k1", "k0"]
    bad = _write(tmp_path, "bad.json", json.dumps({"k0": "nope"}))
    assert "NJ_AUTH_EXTRA_PUBLIC_KEYS_FILE" in _config_error(
        {"NJ_AUTH_DEV_GENERATE_KEY": "true", "NJ_AUTH_EXTRA_PUBLIC_KEYS_FILE": bad})
    not_json = _write(tmp_path, "x.json", "{")
    assert "is not JSON" in _config_error(
        {"NJ_AUTH_DEV_GENERATE_KEY": "true", "NJ_AUTH_EXTRA_PUBLIC_KEYS_FILE": not_json})


def test_every_bad_variable_is_reported_at_once():
    message = _config_error({"NJ_AUTH_KEY_ID": "bad kid!", "NJ_ARGON2_TIME_COST": "0",
                             "NJ_ACCESS_TOKEN_TTL_S": "abc"})
    for name in ("NJ_AUTH_KEY_ID", "NJ_ARGON2_TIME_COST", "NJ_ACCESS_TOKEN_TTL_S",
                 "NJ_AUTH_SIGNING_KEY_FILE"):
        assert name in message
