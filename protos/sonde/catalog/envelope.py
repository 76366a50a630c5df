"""A run order as the server signs it and as the agent checks it before anything runs.

The server signs each RunScriptOrder with its dispatch key; the catalog entry inside carries
the catalog key's own signature, made offline. The agent pinned both public keys at
enrollment, so a server that was taken over can order only what the catalog signed, with
parameters the manifest allows, to the agent named, once, before the expiry; and the agent's
own policy can refuse even that. verify_order() checks, in order, and stops at the first
refusal, whose reason goes back to the server: the order's size, the dispatch signature, the
order's form, the agent it names, its expiry, that this command never ran here, the catalog
signature, the platform, the parameters and the workstation's policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from google.protobuf.message import DecodeError

from sonde.catalog.bundle import BundleError, SignedEntry, key_id, verify_entry
from sonde.catalog.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_SCRIPT_BYTES,
    Manifest,
    ManifestError,
    ParameterValue,
    Platform,
)
from sonde.catalog.policy import AgentPolicy
from sonde.v1 import remediation_pb2

DOMAIN = b"sonde run-script order v1\x00"
MAX_ORDER_BYTES = MAX_MANIFEST_BYTES + MAX_SCRIPT_BYTES + 64 * 1024
# An agent remembers the commands it ran until they expire: a longer life is refused.
LONGEST_LIFE = timedelta(days=31)


class Refusal(Enum):
    """Why an agent refused an order (sent back with the message)."""

    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad-signature"
    OTHER_AGENT = "other-agent"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    CATALOG_SIGNATURE = "catalog-signature"
    PLATFORM = "platform"
    PARAMETERS = "parameters"
    POLICY = "policy"
    # The agent has no pinned dispatch or catalog key (or a damaged one): it checks nothing.
    NO_PINNED_KEY = "no-pinned-key"
    # A user_session script, and no logged-on user's session to run it in (or not Windows).
    USER_SESSION = "user-session"


class OrderRefused(Exception):
    def __init__(self, refusal: Refusal, message: str, command_id: str = "") -> None:
        super().__init__(message)
        self.refusal = refusal
        self.message = message
        self.command_id = command_id


@dataclass(frozen=True)
class VerifiedOrder:
    order: remediation_pb2.RunScriptOrder
    manifest: Manifest
    script: bytes
    values: dict[str, ParameterValue]  # checked, with dry_run


def dispatch_key_id(public_key: ed25519.Ed25519PublicKey) -> str:
    return key_id(public_key)


def sign_order(
    private_key: ed25519.Ed25519PrivateKey, order: remediation_pb2.RunScriptOrder
) -> remediation_pb2.SignedRunScript:
    data = order.SerializeToString(deterministic=True)
    return remediation_pb2.SignedRunScript(
        order=data,
        dispatch_key_id=key_id(private_key.public_key()),
        signature=private_key.sign(DOMAIN + data),
    )


def entry_of(entry: remediation_pb2.CatalogEntry) -> SignedEntry:
    return SignedEntry(
        id=entry.id,
        version=entry.version,
        manifest=entry.manifest,
        script=entry.script,
        key_id=entry.catalog_key_id,
        signature=entry.catalog_signature,
    )


def verify_order(
    signed: remediation_pb2.SignedRunScript,
    *,
    dispatch_key: ed25519.Ed25519PublicKey,
    catalog_key: ed25519.Ed25519PublicKey,
    agent_id: str,
    platform: Platform,
    policy: AgentPolicy,
    already_ran: Callable[[str], bool],
    now: datetime | None = None,
) -> VerifiedOrder:
    """The order, its manifest and checked values; OrderRefused with the first reason."""
    if len(signed.order) > MAX_ORDER_BYTES:
        raise OrderRefused(Refusal.MALFORMED, f"the order is over {MAX_ORDER_BYTES} bytes")
    if not signed.signature:
        raise OrderRefused(Refusal.UNSIGNED, "the order is not signed by the server's dispatch key")
    if signed.dispatch_key_id != key_id(dispatch_key):
        raise OrderRefused(
            Refusal.BAD_SIGNATURE,
            "the order is signed with another dispatch key than the one this agent pinned at "
            "enrollment",
        )
    try:
        dispatch_key.verify(signed.signature, DOMAIN + signed.order)
    except InvalidSignature:
        raise OrderRefused(
            Refusal.BAD_SIGNATURE,
            "the order's signature does not verify with the pinned dispatch key (changed after "
            "signing, or signed by someone else)",
        ) from None
    order = remediation_pb2.RunScriptOrder()
    try:
        order.ParseFromString(signed.order)
    except DecodeError:
        raise OrderRefused(Refusal.MALFORMED, "the signed order does not decode") from None
    command_id = order.command_id
    if not command_id or not order.HasField("expires_at") or not order.HasField("entry"):
        raise OrderRefused(
            Refusal.MALFORMED, "the order lacks its command id, expiry or entry", command_id
        )
    if order.agent_id != agent_id:
        raise OrderRefused(
            Refusal.OTHER_AGENT,
            f"the order is for agent {order.agent_id or '(none)'}, not this one ({agent_id})",
            command_id,
        )
    moment = now or datetime.now(UTC)
    expires = order.expires_at.ToDatetime(tzinfo=UTC)
    if expires <= moment:
        raise OrderRefused(
            Refusal.EXPIRED, f"the order expired at {expires.isoformat()}", command_id
        )
    if (
        order.HasField("issued_at")
        and expires - order.issued_at.ToDatetime(tzinfo=UTC) > LONGEST_LIFE
    ):
        raise OrderRefused(
            Refusal.MALFORMED,
            f"the order's life is over {LONGEST_LIFE.days} days, longer than an agent remembers "
            "what it ran",
            command_id,
        )
    if already_ran(command_id):
        raise OrderRefused(
            Refusal.REPLAYED, f"command {command_id} already ran here: not running it again",
            command_id,
        )  # fmt: skip
    try:
        manifest = verify_entry(catalog_key, entry_of(order.entry))
    except BundleError as error:
        raise OrderRefused(Refusal.CATALOG_SIGNATURE, str(error), command_id) from None
    if platform not in manifest.platforms:
        platforms = ", ".join(p.value for p in manifest.platforms)
        raise OrderRefused(
            Refusal.PLATFORM,
            f"{manifest.id} is for {platforms}; this workstation is {platform.value}",
            command_id,
        )
    try:
        values = manifest.check_values(dict(order.parameters), dry_run=order.dry_run)
    except ManifestError as error:
        raise OrderRefused(Refusal.PARAMETERS, str(error), command_id) from None
    refused = policy.refusal(manifest)
    if refused is not None:
        raise OrderRefused(Refusal.POLICY, refused, command_id)
    return VerifiedOrder(order, manifest, order.entry.script, values)


def order_digest(signed: remediation_pb2.SignedRunScript) -> str:
    """A short name for an order's exact bytes (logs, the agent's journal)."""
    return hashlib.sha256(signed.order).hexdigest()[:16]
