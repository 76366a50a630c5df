"""The signature a receiver checks: HMAC-SHA256, with the endpoint's shared secret, of
`<unix time>.` followed by the body's bytes, sent as `Sonde-Signature: v1=<hex>` beside
`Sonde-Timestamp: <unix time>`. The time is inside what is signed, so a receiver that refuses
an old timestamp refuses a replayed request; each attempt, retries included, is signed anew."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SIGNATURE_HEADER = "Sonde-Signature"
TIMESTAMP_HEADER = "Sonde-Timestamp"
EVENT_ID_HEADER = "Sonde-Event-Id"  # the receiver's idempotency key: a retry carries the same
EVENT_KIND_HEADER = "Sonde-Event-Kind"
TOLERANCE_S = 300  # how old (or how far ahead) a timestamp a receiver should accept
_SCHEME = "v1"


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature(secrets: Sequence[bytes], timestamp: int, body: bytes) -> str:
    """The Sonde-Signature header's value for `body` sent at `timestamp`: one `v1=` value per
    secret, comma-separated (two while a rotation's overlap lasts, the new secret's first)."""
    return ",".join(f"{_SCHEME}={_mac(secret, timestamp, body)}" for secret in secrets)


def signed_headers(secrets: Sequence[bytes], timestamp: int, body: bytes) -> dict[str, str]:
    signed = signature(secrets, timestamp, body)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signed}


def verify(
    secret: bytes,
    timestamp_header: str,
    signature_header: str,
    body: bytes,
    *,
    now: float,
    tolerance_s: int = TOLERANCE_S,
) -> bool:
    """Whether the headers sign `body` with `secret` and the time is within `tolerance_s` of
    `now` (what a receiver does; docs/webhooks.md shows the same in a few lines). The signature
    header may hold several comma-separated `v1=` values: any one matching is enough."""
    if not timestamp_header.isascii() or not timestamp_header.isdigit():
        return False
    timestamp = int(timestamp_header)
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = _mac(secret, timestamp, body)
    offered = [
        value.strip()[len(_SCHEME) + 1 :]
        for value in signature_header.split(",")
        if value.strip().startswith(_SCHEME + "=")
    ]
    return any(hmac.compare_digest(value.encode(), expected.encode()) for value in offered)
