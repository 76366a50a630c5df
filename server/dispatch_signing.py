"""The dispatch key the server signs each RunScriptOrder with (pki/dispatch.key, Ed25519).

Read once at the start: a key that is missing leaves the server without script runs (a run's
delivery says so); one that is not an Ed25519 private key refuses the start, naming the file.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.server.pki import PkiPaths


class DispatchKeyUnreadable(ValueError):
    """pki/dispatch.key is there but is not an Ed25519 private key (PEM)."""


def load_dispatch_private_key(paths: PkiPaths) -> ed25519.Ed25519PrivateKey | None:
    """pki/dispatch.key, or None when it is absent."""
    try:
        pem = paths.dispatch_key.read_bytes()
    except FileNotFoundError:
        return None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise DispatchKeyUnreadable(
            f"{paths.dispatch_key} is not an Ed25519 private key (PEM): restore it from the "
            "data folder's backup (agents pinned its public half at enrollment)"
        )
    return key
