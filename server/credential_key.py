"""The credentials key: pki/credentials.key in the data folder, 32 random bytes, owner-only.

Remote credentials' secrets are sealed with it (server/domain/credential_secrets.py), so it
must never be in the database and must be the same on every replica (copy pki/ whole, as for
the CA). `sonde-server init` makes it; a data folder made before it existed gets one the
first time the server starts. A missing or other key while credentials are stored refuses the
start: a new key could open none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sonde.server.domain.credential_secrets import CREDENTIAL_KEY_BYTES, CredentialKey
from sonde.server.key_files import KeyFile, KeyFileProblem, create_key_file, read_key_file

CREDENTIAL_KEY_FILE = "credentials.key"


class CredentialKeyProblem(KeyFileProblem):
    """The key file cannot be used: says which file and what to do."""


_KEY_FILE = KeyFile(
    the="the credentials key",
    one="a credentials key",
    restore="restore it from a backup of the data folder",
    problem=CredentialKeyProblem,
    size=CREDENTIAL_KEY_BYTES,
)


def credential_key_path(pki_root: Path) -> Path:
    return pki_root / CREDENTIAL_KEY_FILE


def load_credential_key(path: Path) -> CredentialKey | None:
    """The key in `path`, or None when there is no such file."""
    secret = read_key_file(path, _KEY_FILE)
    return CredentialKey(secret) if secret is not None else None


def create_credential_key(path: Path) -> CredentialKey:
    """A new key in `path`, which must not exist (O_EXCL: no file or link is followed)."""
    return CredentialKey(create_key_file(path, _KEY_FILE))


def credential_key_for_store(
    pki_root: Path, sealed_with: Mapping[str, int]
) -> tuple[CredentialKey, bool]:
    """The key to run with, checked against what the stored credentials were sealed with
    (key id -> how many); and whether it was made now (only when none is stored)."""
    path = credential_key_path(pki_root)
    key = load_credential_key(path)
    stored = sum(sealed_with.values())
    if key is None:
        if stored:
            raise CredentialKeyProblem(
                f"{path} is missing, but {stored} remote credentials are sealed with it: "
                "restore it from a backup of the data folder, or copy it from another "
                "replica's pki/ (a new key could open none of them)"
            )
        return create_credential_key(path), True
    others = {key_id: count for key_id, count in sealed_with.items() if key_id != key.key_id}
    if others:
        count = sum(others.values())
        raise CredentialKeyProblem(
            f"{path} is not the key {count} of the stored remote credentials were sealed "
            f"with (key {', '.join(sorted(others))}; this file is key {key.key_id}): copy "
            "pki/credentials.key from the data folder of the server that added them"
        )
    return key, False
