"""An Ed25519 public key this agent pinned at enrollment, kept as PEM in its state folder.

Two are pinned: the catalog key (catalog.pub: only scripts it signed run) and the server's
dispatch key (dispatch.pub: only run orders it signed run). The server sends both in the
enrollment reply; the agent keeps the first one it gets and refuses another later, unless the
enrollment is started over with --force (a machine moved to another server). The files are
written owner-only like every file of the state folder (sonde.private_files).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.ed25519_keys import NotAnEd25519Key, ed25519_public_key
from sonde.private_files import write_private_file


class PinnedKeyRefused(Exception):
    """The key offered, or the one kept, is refused: one line saying why."""


def _key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def _raw(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class PinnedKey:
    """One pinned key: its file in the state folder and its name in messages."""

    file_name: str
    what: str  # "catalog", "dispatch"
    error: type[PinnedKeyRefused] = PinnedKeyRefused

    def pinned(self, state_dir: Path) -> ed25519.Ed25519PublicKey | None:
        """The pinned key, None when this agent pinned none; refused when the file is not an
        Ed25519 public key (never silently trusted or ignored)."""
        path = state_dir / self.file_name
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return ed25519_public_key(pem)
        except NotAnEd25519Key as error:
            raise self.error(f"{path} {error}") from None

    def check(self, state_dir: Path, offered: bytes, *, replace: bool) -> bool:
        """Whether `offered` (32 raw bytes from the enrollment reply) is to be written; refused
        when it may not be. A key pinned already stays when `offered` is the same (False:
        nothing to write); another, or none, is refused unless `replace` (enroll --force)."""
        path = state_dir / self.file_name
        if offered and len(offered) != 32:
            raise self.error(
                f"the server sent a {self.what} key of {len(offered)} bytes, not an Ed25519 "
                "key (32)"
            )
        if replace:
            return True
        kept = self.pinned(state_dir)
        if kept is None:
            return True
        if not offered:
            raise self.error(
                f"this agent pins {self.what} key {_key_id(_raw(kept))} ({path}) and the server "
                "sent none; refusing (enroll --force starts over)"
            )
        if _raw(kept) != offered:
            raise self.error(
                f"this agent pins {self.what} key {_key_id(_raw(kept))} ({path}) and the server "
                f"sent another, {_key_id(offered)}; refusing it (enroll --force starts over)"
            )
        return False

    def pin(self, state_dir: Path, offered: bytes, *, replace: bool) -> None:
        """Keep `offered` as the pinned key, after check(); with `replace` and no key offered,
        the old pin is forgotten (it was another server's)."""
        if not self.check(state_dir, offered, replace=replace):
            return
        path = state_dir / self.file_name
        if not offered:
            path.unlink(missing_ok=True)
            return
        key = ed25519.Ed25519PublicKey.from_public_bytes(offered)
        pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        write_private_file(path, pem)
