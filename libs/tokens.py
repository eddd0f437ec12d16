"""Access tokens: EdDSA (Ed25519) JWTs signed by auth, verified anywhere with public keys.

auth holds the private key; gateways fetch the public keys (``im.auth.jwks``) and verify
locally, so a compromised gateway cannot mint tokens. ``kid`` selects the key, so a new
signing key can be rolled out while tokens signed by the old one still verify.
Only EdDSA is accepted: ``alg: none``, HS256 with a public key as secret and every other
algorithm are rejected by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import Unauthenticated

ALGORITHM = "EdDSA"
ISSUER = "natterjack"
AUDIENCE = "natterjack"


class TokenExpired(Unauthenticated):
    """Raised when an access token's ``exp`` has passed (the client should refresh)."""


@dataclass(frozen=True)
class Claims:
    user_id: str
    device_id: str
    session_id: str
    expires_at: int


def generate_private_key_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def sign(private_pem: str, kid: str, claims: Claims, issued_at: int) -> str:
    payload = {"sub": claims.user_id, "did": claims.device_id, "sid": claims.session_id,
               "iat": issued_at, "nbf": issued_at, "exp": claims.expires_at,
               "iss": ISSUER, "aud": AUDIENCE}
    return jwt.encode(payload, private_pem, algorithm=ALGORITHM, headers={"kid": kid})


class Verifier:
    """Verifies access tokens against a set of public keys by ``kid``."""

    def __init__(self, public_keys: dict[str, str], leeway: float = 5.0):
        self.leeway = leeway
        self._keys: dict[str, Ed25519PublicKey] = {}
        self.update(public_keys)

    def update(self, public_keys: dict[str, str]) -> None:
        keys = {}
        for kid, pem in public_keys.items():
            key = serialization.load_pem_public_key(pem.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"key {kid} is not an Ed25519 public key")
            keys[kid] = key
        self._keys = keys

    def knows(self, kid: str) -> bool:
        return kid in self._keys

    @staticmethod
    def kid_of(token: str) -> str:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("malformed token") from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") != ALGORITHM:
            raise Unauthenticated("token is not signed with a known algorithm and key")
        return kid

    def verify(self, token: str) -> Claims:
        key = self._keys.get(self.kid_of(token))
        if key is None:
            raise Unauthenticated("token signed by an unknown key")
        try:
            payload: dict[str, Any] = jwt.decode(
                token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                leeway=self.leeway, options={"require": ["exp", "iat", "nbf", "sub", "sid", "did"]})
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("access token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        return Claims(str(payload["sub"]), str(payload["did"]), str(payload["sid"]), int(payload["exp"]))
