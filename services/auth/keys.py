"""The keys behind access tokens: auth's Ed25519 signing key and the public keys it publishes.

Rolling a key: make the new key the signing key and list the old one's public key in
``NJ_AUTH_EXTRA_PUBLIC_KEYS_FILE``; both are served by ``im.auth.jwks`` so tokens signed
with the old key keep verifying until they expire.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from libs import tokens

KID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class KeyFileError(ValueError):
    """A key file is unreadable or does not hold what it must; the message says which."""


@dataclass(frozen=True)
class KeySet:
    kid: str
    private_pem: str = field(repr=False)
    public_keys: dict[str, str]  # kid -> SubjectPublicKeyInfo PEM, the signing key's first
    generated: bool = False

    def sign(self, claims: tokens.Claims, issued_at: int) -> str:
        return tokens.sign(self.private_pem, self.kid, claims, issued_at)

    def jwks(self) -> list[dict[str, Any]]:
        return [jwk(kid, pem) for kid, pem in self.public_keys.items()]

    def verifier(self) -> tokens.Verifier:
        return tokens.Verifier(self.public_keys)


def build_key_set(private_pem: str, kid: str, extra: dict[str, str], *,
                  generated: bool = False) -> KeySet:
    public = {kid: tokens.public_pem(private_pem)}
    public.update({k: v for k, v in extra.items() if k != kid})
    return KeySet(kid, private_pem, public, generated)


def generate_key_set(kid: str, extra: dict[str, str]) -> KeySet:
    """An in-memory key for development and tests (tokens die with the process)."""
    return build_key_set(tokens.generate_private_key_pem(), kid, extra, generated=True)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{what} {path!r} is unreadable: {exc.strerror or exc}") from None


def load_private_key(path: str) -> str:
    """The Ed25519 private key in ``path`` (PKCS8 PEM, unencrypted), re-serialized."""
    data = _read(path, "signing key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"signing key file {path!r} is not an unencrypted PEM private key: "
                           f"{exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key file {path!r} holds a {type(key).__name__}, "
                           "not an Ed25519 key")
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def load_extra_public_keys(path: str) -> dict[str, str]:
    """``{kid: public_pem}`` from a JSON file; every key must be Ed25519."""
    try:
        value = orjson.loads(_read(path, "extra public keys file"))
    except orjson.JSONDecodeError as exc:
        raise KeyFileError(f"extra public keys file {path!r} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise KeyFileError(f"extra public keys file {path!r} must hold an object {{kid: pem}}")
    return {kid: _public_pem(path, kid, pem) for kid, pem in value.items()}


def _public_pem(path: str, kid: str, pem: Any) -> str:
    if not KID_RE.fullmatch(kid):
        raise KeyFileError(f"extra public keys file {path!r}: bad key id {kid!r}")
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else b"")
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"extra public keys file {path!r}: key {kid!r} is not a PEM "
                           f"public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"extra public keys file {path!r}: key {kid!r} is not Ed25519")
    return str(pem)


def jwk(kid: str, public_pem: str) -> dict[str, Any]:
    """One JWKS entry (RFC 8037 OKP form) that also carries the PEM for simple clients."""
    key = serialization.load_pem_public_key(public_pem.encode())
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kid": kid, "alg": tokens.ALGORITHM, "kty": "OKP", "crv": "Ed25519", "use": "sig",
            "x": x, "public_key_pem": public_pem}
