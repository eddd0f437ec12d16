"""Access tokens as auth issues them: they verify with the published keys, forgeries do not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from libs import tokens
from libs.errors import UNAUTHENTICATED
from services.auth.keys import build_key_set, generate_key_set, jwk

# Read once at import, which in a full run may be many minutes before these tests run:
# the tokens they sign live a day, so they are still valid then.
NOW = int(time.time())
TTL_S = 86_400
CLAIMS = tokens.Claims("U1", "D1", "S1", NOW + TTL_S)


@pytest.fixture(scope="module")
def key_set():
    return generate_key_set("k1", {})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _payload(**changes):
    payload = {"sub": "U1", "did": "D1", "sid": "S1", "iat": NOW, "nbf": NOW, "exp": NOW + TTL_S,
               "iss": tokens.ISSUER, "aud": tokens.AUDIENCE}
    payload.update(changes)
    return payload


def _rejected(verifier: tokens.Verifier, token: str) -> tokens.Unauthenticated:
    with pytest.raises(tokens.Unauthenticated) as caught:
        verifier.verify(token)
    assert caught.value.code == UNAUTHENTICATED
    return caught.value


def test_signed_token_round_trips(key_set):
    token = key_set.sign(CLAIMS, NOW)
    assert key_set.verifier().verify(token) == CLAIMS
    assert tokens.Verifier.kid_of(token) == "k1"


def test_token_verifies_with_keys_from_the_jwks_entries(key_set):
    published = {entry["kid"]: entry["public_key_pem"] for entry in key_set.jwks()}
    assert tokens.Verifier(published).verify(key_set.sign(CLAIMS, NOW)) == CLAIMS
    entry = key_set.jwks()[0]
    assert (entry["alg"], entry["kty"], entry["crv"]) == ("EdDSA", "OKP", "Ed25519")
    assert len(base64.urlsafe_b64decode(entry["x"] + "=")) == 32


def test_wrong_key_with_the_same_kid_is_rejected(key_set):
    forged = generate_key_set("k1", {}).sign(CLAIMS, NOW)
    _rejected(key_set.verifier(), forged)


def test_unknown_kid_is_rejected(key_set):
    other = generate_key_set("k9", {}).sign(CLAIMS, NOW)
    _rejected(key_set.verifier(), other)


def test_alg_none_is_rejected(key_set):
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode())
    token = f"{header}.{_b64(json.dumps(_payload()).encode())}."
    _rejected(key_set.verifier(), token)


def test_hs256_with_the_public_key_as_secret_is_rejected(key_set):
    secret = key_set.public_keys["k1"].encode()
    signing_input = (_b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode()) + "."
                     + _b64(json.dumps(_payload()).encode()))
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    _rejected(key_set.verifier(), f"{signing_input}.{_b64(signature)}")


def test_hs256_header_swapped_onto_an_eddsa_signature_is_rejected(key_set):
    _, payload, signature = key_set.sign(CLAIMS, NOW).split(".")
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    _rejected(key_set.verifier(), f"{header}.{payload}.{signature}")


def test_expired_token_is_rejected_as_expired(key_set):
    token = key_set.sign(tokens.Claims("U1", "D1", "S1", NOW - 60), NOW - 1000)
    assert isinstance(_rejected(key_set.verifier(), token), tokens.TokenExpired)


def test_wrong_audience_and_issuer_are_rejected(key_set):
    for changes in ({"aud": "someone-else"}, {"iss": "someone-else"}):
        token = jwt.encode(_payload(**changes), key_set.private_pem, algorithm="EdDSA",
                           headers={"kid": "k1"})
        _rejected(key_set.verifier(), token)


def test_missing_session_claim_is_rejected(key_set):
    payload = _payload()
    del payload["sid"]
    token = jwt.encode(payload, key_set.private_pem, algorithm="EdDSA", headers={"kid": "k1"})
    _rejected(key_set.verifier(), token)


def test_tampered_payload_is_rejected(key_set):
    header, _, signature = key_set.sign(CLAIMS, NOW).split(".")
    tampered = _b64(json.dumps(_payload(sub="U2")).encode())
    _rejected(key_set.verifier(), f"{header}.{tampered}.{signature}")


def test_garbage_is_rejected(key_set):
    for token in ("", "abc", "a.b.c", "a.b"):
        _rejected(key_set.verifier(), token)


def test_an_older_key_listed_as_extra_still_verifies():
    old = generate_key_set("k0", {})
    new = build_key_set(generate_key_set("k1", {}).private_pem, "k1", old.public_keys)
    assert list(new.public_keys) == ["k1", "k0"]
    assert new.verifier().verify(old.sign(CLAIMS, NOW)) == CLAIMS
    assert [entry["kid"] for entry in new.jwks()] == ["k1", "k0"]
    assert jwk("k0", old.public_keys["k0"])["public_key_pem"] == old.public_keys["k0"]
