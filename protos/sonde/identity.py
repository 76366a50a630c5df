"""Agent identity: the id is derived from the agent's public key, nothing else."""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

# 26 base32 characters: 130 bits of SHA-256 over the SubjectPublicKeyInfo.
AGENT_ID_PATTERN = re.compile(r"^[a-z2-7]{26}$")


def agent_id_from_public_key(public_key: PublicKeyTypes) -> str:
    """The agent id for a public key: stable, unguessable, safe in paths and logs."""
    # Imported here: `sonde-agent run` never derives an id, and cryptography costs ~8 MiB of
    # RSS; hashlib would load OpenSSL, which the running agent keeps out (agent/cli.py).
    import hashlib

    from cryptography.hazmat.primitives import serialization

    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.sha256(spki).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:26]


def is_agent_id(value: str) -> bool:
    return AGENT_ID_PATTERN.fullmatch(value) is not None
