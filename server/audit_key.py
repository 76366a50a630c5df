"""The server's audit key: pki/audit.key in the data folder, 32 random bytes, owner-only.

The audit chain is keyed with it (server/domain/audit_rows.py), so it must never be in the
database and must be the same on every replica (copy pki/ whole, as for the CA). A data
folder made before the key existed gets one the first time the server starts; the chain is
keyed from its next row on.
"""

from __future__ import annotations

from pathlib import Path

from sonde.server.domain.audit import AuditLog
from sonde.server.domain.audit_rows import AUDIT_KEY_BYTES, AuditKey
from sonde.server.key_files import KeyFile, KeyFileProblem, create_key_file, read_key_file

AUDIT_KEY_FILE = "audit.key"


class AuditKeyProblem(KeyFileProblem):
    """The key file cannot be used: says which file and what to do."""


_KEY_FILE = KeyFile(
    the="the audit key",
    one="an audit key",
    restore="restore it from a backup of the data folder (a new key cannot verify the old rows)",
    problem=AuditKeyProblem,
    size=AUDIT_KEY_BYTES,
)


def audit_key_path(pki_root: Path) -> Path:
    return pki_root / AUDIT_KEY_FILE


def load_audit_key(path: Path) -> AuditKey | None:
    """The key in `path`, or None when there is no such file."""
    secret = read_key_file(path, _KEY_FILE)
    return AuditKey(secret) if secret is not None else None


def create_audit_key(path: Path) -> AuditKey:
    """A new key in `path`, which must not exist (O_EXCL: no file or link is followed)."""
    return AuditKey(create_key_file(path, _KEY_FILE))


def ensure_audit_key(pki_root: Path) -> tuple[AuditKey, bool]:
    """The data folder's key, made now if it has none; and whether it was made now."""
    path = audit_key_path(pki_root)
    key = load_audit_key(path)
    if key is not None:
        return key, False
    return create_audit_key(path), True


async def audit_key_for_chain(pki_root: Path, audit: AuditLog) -> tuple[AuditKey, bool]:
    """The key to run with, checked against the chain's head; and whether it was made now.

    A key is made only for a chain that has never been keyed: a keyed chain whose key is
    missing, or another key than the one it was keyed with, refuses the start (every audited
    write would be refused, and a new key could not verify the old rows).
    """
    path = audit_key_path(pki_root)
    key = load_audit_key(path)
    head = await audit.head()
    if head is None or head.keyed_from is None:
        return (key, False) if key is not None else (create_audit_key(path), True)
    if key is None:
        raise AuditKeyProblem(
            f"{path} is missing, but the audit chain is keyed with it from row {head.keyed_from}: "
            "restore it from a backup of the data folder, or copy it from another replica's "
            "pki/ (a new key could neither write to nor verify this chain)"
        )
    if head.key_check != key.check:
        raise AuditKeyProblem(
            f"{path} is not the key the audit chain is keyed with (from row {head.keyed_from}): "
            "copy pki/audit.key from the data folder of the server that keyed it"
        )
    return key, False
