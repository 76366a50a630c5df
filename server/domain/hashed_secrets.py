"""Random secrets stored only as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

# Compared against when an id is unknown, so a miss costs as much as a wrong secret.
_DECOY_DIGEST = hashlib.sha256(b"sonde: no such secret").digest()


def new_id() -> str:
    """16 hex characters: a public handle, not a secret."""
    return secrets.token_hex(8)


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def matches(secret: bytes, stored_digest: bytes | None) -> bool:
    """Constant-time: True when `secret` hashes to `stored_digest` (False when that is None)."""
    expected = stored_digest if stored_digest is not None else _DECOY_DIGEST
    same = hmac.compare_digest(digest(secret), expected)
    return same and stored_digest is not None
