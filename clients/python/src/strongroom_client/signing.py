"""Key files and request signing (`strongroom-request-v2`, docs/FORMATS.md).

The private halves of keys live in `ApiKey` and `ApproverKey`, whose `repr`
never shows them; nothing in this package logs or prints them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import KeyFileError

API_KEY_MAGIC = "strongroom-api-key-v1"
APPROVER_KEY_MAGIC = "strongroom-approver-key-v1"
REQUEST_FORMAT = "strongroom-request-v2"

KEY_HEADER = "x-strongroom-key"
TIMESTAMP_HEADER = "x-strongroom-timestamp"
NONCE_HEADER = "x-strongroom-nonce"
SIGNATURE_HEADER = "x-strongroom-signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def _seed_from_hex(text: str, path: str) -> bytes:
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{path}: the secret is not hex") from None
    if len(seed) != 32:
        raise KeyFileError(f"{path}: the secret is not 32 bytes")
    return seed


def _public_hex(private: Ed25519PrivateKey) -> str:
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return raw.hex()


@dataclass(frozen=True)
class ApiKey:
    """An API key: its id and its Ed25519 private key (never shown)."""

    key_id: str
    _private: Ed25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "ApiKey":
        """Reads a key file as `strongroom apikey create --out` writes it."""
        name = os.fspath(path)
        with open(name, encoding="utf-8") as f:
            lines = f.read().splitlines()
        if len(lines) < 3 or lines[0] != API_KEY_MAGIC:
            raise KeyFileError(f"{name}: not a strongroom API key file")
        if not lines[1].startswith("id ") or not lines[2].startswith("secret "):
            raise KeyFileError(f"{name}: not a strongroom API key file")
        key_id = lines[1][len("id ") :]
        seed = _seed_from_hex(lines[2][len("secret ") :], name)
        return cls(key_id, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_key_hex(self) -> str:
        return _public_hex(self._private)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


@dataclass(frozen=True)
class ApproverKey:
    """An approver's own Ed25519 key (`strongroom approver-key new`), which
    signs `SRAP` approval statements. Its private half is never shown."""

    _private: Ed25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "ApproverKey":
        name = os.fspath(path)
        with open(name, encoding="utf-8") as f:
            lines = f.read().splitlines()
        if len(lines) < 2 or lines[0] != APPROVER_KEY_MAGIC or not lines[1].startswith("secret "):
            raise KeyFileError(f"{name}: not a strongroom approver key file")
        seed = _seed_from_hex(lines[1][len("secret ") :], name)
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_key_hex(self) -> str:
        return _public_hex(self._private)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


def request_message(
    method: str,
    path: str,
    query: str,
    body: bytes,
    timestamp_ms: str,
    nonce: str,
    idempotency_key: str,
) -> bytes:
    """The eight lines an API key signs, joined by line feeds."""
    return "\n".join(
        [
            REQUEST_FORMAT,
            method,
            path,
            query,
            hashlib.sha256(body).hexdigest(),
            timestamp_ms,
            nonce,
            idempotency_key,
        ]
    ).encode("utf-8")


def new_nonce() -> str:
    """24 characters of base64url: 18 random bytes, as `strongroom api` makes them."""
    return base64.urlsafe_b64encode(secrets.token_bytes(18)).decode("ascii")


def signed_headers(
    key: ApiKey,
    method: str,
    path: str,
    query: str,
    body: bytes,
    idempotency_key: str | None = None,
    *,
    timestamp_ms: int | None = None,
    nonce: str | None = None,
) -> Mapping[str, str]:
    """The headers of one signed request: a fresh nonce and the current time
    unless given. `path` and `query` must be exactly what is sent."""
    stamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    once = nonce if nonce is not None else new_nonce()
    message = request_message(method, path, query, body, stamp, once, idempotency_key or "")
    headers = {
        KEY_HEADER: key.key_id,
        TIMESTAMP_HEADER: stamp,
        NONCE_HEADER: once,
        SIGNATURE_HEADER: base64.b64encode(key.sign(message)).decode("ascii"),
    }
    if idempotency_key is not None:
        headers[IDEMPOTENCY_HEADER] = idempotency_key
    return headers
