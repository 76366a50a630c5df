"""The catalog public key this agent pinned at enrollment (catalog.pub in its state folder).

The agent runs only catalog scripts signed by this key. Kept, checked and replaced as every
pinned key is (agent/pinned_key.py): the first one stays, another is refused unless
`enroll --force`.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.agent.paths import CATALOG_KEY_FILE
from sonde.agent.pinned_key import PinnedKey, PinnedKeyRefused


class CatalogKeyRefused(PinnedKeyRefused):
    """The catalog key offered, or the one kept, is refused: one line saying why."""


CATALOG_KEY = PinnedKey(CATALOG_KEY_FILE, "catalog", CatalogKeyRefused)


def pinned_catalog_key(state_dir: Path) -> ed25519.Ed25519PublicKey | None:
    return CATALOG_KEY.pinned(state_dir)


def check_catalog_key(state_dir: Path, offered: bytes, *, replace: bool) -> bool:
    return CATALOG_KEY.check(state_dir, offered, replace=replace)


def pin_catalog_key(state_dir: Path, offered: bytes, *, replace: bool) -> None:
    CATALOG_KEY.pin(state_dir, offered, replace=replace)
