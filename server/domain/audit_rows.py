"""An audit row's canonical encoding and its link in the chain, plain or keyed.

Row n's hash links it to row n-1: hash_n = H(hash_{n-1} || "\\n[" n "," tail_n), where tail_n
is the row's fields after its id as compact JSON, and hash_0 is 64 zeros. H is SHA-256 for the
rows written before the chain was keyed and HMAC-SHA256 with the server's audit key (kept in
the data folder, never in the database) from then on: without the key, nobody can write a row
or rewrite one and recompute links that verify. The database computes the link when a row is
appended (server/domain/audit_chain.py); verification recomputes it here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sonde.server.domain.clock import require_aware
from sonde.server.domain.text import sanitized

GENESIS_HASH = "0" * 64
AUDIT_KEY_BYTES = 32
_BLOCK = 64  # SHA-256's block: HMAC pads the key to it
_KEY_CHECK_MESSAGE = b"sonde audit key check"
# Detail keys that could carry a secret (token, api_token, secret, ...) are dropped, whatever
# the caller passed; a token's public id ("token_id") is kept.
_SECRET_KEYS = ("token", "secret", "password")

DetailValue = str | int | None


@dataclass(frozen=True)
class AuditKey:
    """The secret the chain is keyed with (HMAC-SHA256)."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != AUDIT_KEY_BYTES:
            raise ValueError(f"an audit key is {AUDIT_KEY_BYTES} bytes, not {len(self.secret)}")

    def __repr__(self) -> str:
        return f"AuditKey(check={self.check[:12]}...)"

    @property
    def check(self) -> str:
        """Names the key without revealing it: stored with the chain to refuse another key."""
        return hmac.new(self.secret, _KEY_CHECK_MESSAGE, hashlib.sha256).hexdigest()

    def link(self, message: bytes) -> str:
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def bound(self) -> dict[str, Any]:
        """What a statement binds to compute links with this key: the key (SQLite's function)
        or HMAC's inner and outer padded keys (PostgreSQL's nested sha256), and the check."""
        padded = self.secret.ljust(_BLOCK, b"\0")
        return {
            "audit_key": self.secret,
            "audit_ipad": bytes(byte ^ 0x36 for byte in padded),
            "audit_opad": bytes(byte ^ 0x5C for byte in padded),
            "audit_key_check": self.check,
        }


def canonical_detail(detail: Mapping[str, DetailValue]) -> str:
    kept = {
        str(key): value
        for key, value in detail.items()
        if not str(key).lower().endswith(_SECRET_KEYS)
    }
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_tail(
    *,
    at: datetime,
    actor: str,
    action: str,
    agent_id: str | None,
    ticket_id: int | None,
    detail: str,
    result: str,
) -> str:
    """The canonical encoding of a row after its id: `[id,` + this is the whole encoding."""
    encoded = json.dumps(
        [at.isoformat(), actor, action, agent_id, ticket_id, detail, result],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return encoded[1:]


def chain_hash(
    prev_hash: str,
    *,
    row_id: int,
    at: datetime,
    actor: str,
    action: str,
    agent_id: str | None,
    ticket_id: int | None,
    detail: str,
    result: str,
    key: AuditKey | None = None,
) -> str:
    """The hash of one row, linked to the row before it (keyed when `key` is given)."""
    tail = row_tail(
        at=at,
        actor=actor,
        action=action,
        agent_id=agent_id,
        ticket_id=ticket_id,
        detail=detail,
        result=result,
    )
    message = f"{prev_hash}\n[{row_id},{tail}".encode()
    return key.link(message) if key is not None else hashlib.sha256(message).hexdigest()


def audit_values(
    at: datetime,
    actor: str,
    action: str,
    *,
    agent_id: str | None = None,
    ticket_id: int | None = None,
    detail: Mapping[str, DetailValue] | None = None,
    result: str = "ok",
    key: AuditKey | None = None,
) -> dict[str, Any]:
    """The values an audit row's statements bind (audit_chain.append_row, audit_row_cte)."""
    detail_text = canonical_detail(detail or {})
    result = sanitized(result, max_chars=2000)
    at = require_aware(at, "audit time")  # UTC, as verify() reads it back
    tail = row_tail(
        at=at,
        actor=actor,
        action=action,
        agent_id=agent_id,
        ticket_id=ticket_id,
        detail=detail_text,
        result=result,
    )
    values: dict[str, Any] = {
        "audit_at": at,
        "audit_actor": actor,
        "audit_action": action,
        "audit_agent_id": agent_id,
        "audit_ticket_id": ticket_id,
        "audit_detail": detail_text,
        "audit_result": result,
        "audit_tail": tail,
    }
    if key is not None:
        values.update(key.bound())
    return values
