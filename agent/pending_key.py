"""The key of an enrollment not yet answered, kept so that a retry enrolls the same machine.

Enrollment makes its key and writes it here (owner-only, through write_private_file) before it
calls Enroll. If the reply never arrives (connection cut, agent killed, timeout), the server
may have recorded the agent anyway; running `sonde-agent enroll` again with a string for the
same server (the same pinned CA) reuses this key, so the server answers the same agent id
again instead of recording a second machine. Once the certificate and agent.json are
stored, the file goes. `--force` discards it and starts over with a new key.

The file is JSON: {"ca_sha256": hex digest of the CA certificate (DER) the string pins,
"private_key_pem": the PKCS#8 PEM key}. A key pending for another server is replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sonde.agent.paths import PENDING_KEY_FILE
from sonde.agent.state import fsync_dir, write_private_file

_MAX_BYTES = 16_384
_READ_ONLY = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


class PendingKeyDamaged(Exception):
    """The pending key file is there but unusable; the message names it and what to do."""


def _ca_digest(ca_der: bytes) -> str:
    return hashlib.sha256(ca_der).hexdigest()


def pending_key(state_dir: Path, ca_der: bytes) -> ec.EllipticCurvePrivateKey | None:
    """The key pending for the server whose CA is `ca_der`; None when there is none, or when
    the pending key is another server's."""
    path = state_dir / PENDING_KEY_FILE
    try:
        fd = os.open(path, _READ_ONLY)  # a planted link is refused, never followed
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(_MAX_BYTES + 1)
    damaged = PendingKeyDamaged(
        f"{path} (the key of an unfinished enrollment) is damaged; remove it, or pass "
        "--force to start over with a new key"
    )
    try:
        record = json.loads(raw) if len(raw) <= _MAX_BYTES else None
    except ValueError:
        raise damaged from None
    if not isinstance(record, dict) or not all(
        isinstance(record.get(name), str) for name in ("ca_sha256", "private_key_pem")
    ):
        raise damaged
    if record["ca_sha256"] != _ca_digest(ca_der):
        return None
    try:
        key = serialization.load_pem_private_key(
            record["private_key_pem"].encode("ascii"), password=None
        )
    except (ValueError, TypeError, UnicodeEncodeError):
        raise damaged from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise damaged
    return key


def keep_pending_key(state_dir: Path, key: ec.EllipticCurvePrivateKey, ca_der: bytes) -> None:
    """Write the key before it is sent for certification (replacing any other pending key)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    record = {"ca_sha256": _ca_digest(ca_der), "private_key_pem": pem.decode("ascii")}
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    write_private_file(state_dir / PENDING_KEY_FILE, text.encode("ascii"))


def forget_pending_key(state_dir: Path) -> None:
    """The enrollment is stored (or started over): its pending key goes."""
    path = state_dir / PENDING_KEY_FILE
    if path.exists() or path.is_symlink():
        path.unlink()
        fsync_dir(state_dir)
