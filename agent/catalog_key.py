"""The catalog public key this agent pinned at enrollment (catalog.pub in its state folder).

The agent runs only catalog scripts signed by this key. The server sends it in the
enrollment reply; the agent keeps the first one it gets and refuses another later, unless
the enrollment is started over with --force (a machine moved to another server). The file is
written owner-only like every file of the state folder (sonde.private_files).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.agent.paths import CATALOG_KEY_FILE
from sonde.private_files import write_private_file


class CatalogKeyRefused(Exception):
    """The catalog key offered, or the one kept, is refused: one line saying why."""


def _key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def pinned_catalog_key(state_dir: Path) -> ed25519.Ed25519PublicKey | None:
    """The pinned key, None when this agent pinned none; CatalogKeyRefused when the file is
    not an Ed25519 public key (never silently trusted or ignored)."""
    path = state_dir / CATALOG_KEY_FILE
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise CatalogKeyRefused(f"{path} is not a PEM public key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise CatalogKeyRefused(f"{path} is not an Ed25519 public key")
    return key


def _raw(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def check_catalog_key(state_dir: Path, offered: bytes, *, replace: bool) -> bool:
    """Whether `offered` (32 raw bytes from the enrollment reply) is to be written as this
    agent's catalog key; CatalogKeyRefused when it may not be.

    A key pinned already stays when `offered` is the same (False: nothing to write); another,
    or none, is refused unless `replace` (enroll --force, which starts over)."""
    path = state_dir / CATALOG_KEY_FILE
    if offered and len(offered) != 32:
        raise CatalogKeyRefused(
            f"the server sent a catalog key of {len(offered)} bytes, not an Ed25519 key (32)"
        )
    if replace:
        return True
    kept = pinned_catalog_key(state_dir)
    if kept is None:
        return True
    if not offered:
        raise CatalogKeyRefused(
            f"this agent pins catalog key {_key_id(_raw(kept))} ({path}) and the server "
            "sent none; refusing (enroll --force starts over)"
        )
    if _raw(kept) != offered:
        raise CatalogKeyRefused(
            f"this agent pins catalog key {_key_id(_raw(kept))} ({path}) and the server "
            f"sent another, {_key_id(offered)}; refusing it (enroll --force starts over)"
        )
    return False


def pin_catalog_key(state_dir: Path, offered: bytes, *, replace: bool) -> None:
    """Keep `offered` as the pinned key, after check_catalog_key; with `replace` and no key
    offered, the old pin is forgotten (it was another server's)."""
    if not check_catalog_key(state_dir, offered, replace=replace):
        return
    path = state_dir / CATALOG_KEY_FILE
    if not offered:
        path.unlink(missing_ok=True)
        return
    key = ed25519.Ed25519PublicKey.from_public_bytes(offered)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_private_file(path, pem)
