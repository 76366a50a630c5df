"""Reading an Ed25519 public key from PEM: the catalog key and the dispatch key, on the server
(pki/*.pub), the agent (its pinned copies) and in sonde-catalog. One reading, one set of
refusals; each caller says which file in its own error."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


class NotAnEd25519Key(ValueError):
    """The bytes are not a PEM public key, or are another kind of key: the message says which."""


def ed25519_public_key(pem: bytes) -> ed25519.Ed25519PublicKey:
    """The Ed25519 public key in `pem`; NotAnEd25519Key saying what it is instead."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise NotAnEd25519Key("is not a PEM public key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise NotAnEd25519Key("is not an Ed25519 public key")
    return key
