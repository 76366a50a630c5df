"""The signed catalog bundle: what `sonde-catalog sign` writes and the server publishes.

A bundle is a JSON document (format "sonde-catalog-bundle", version 1) listing entries; each
entry carries its id and version, the exact bytes of its manifest and its script (base64),
the id of the key that signed it and an Ed25519 signature. The signature covers a
domain-separated, length-prefixed encoding of the manifest's and the script's bytes (see
signed_message), never a re-serialization, so what the agent runs is byte for byte what the
catalog key signed. A key's id is the SHA-256 of its raw 32-byte public key, in hex.

verify_entry checks the signature before it parses anything, then that the manifest parses
and names the same id and version as the entry; every refusal says which entry and why.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.catalog.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_SCRIPT_BYTES,
    Manifest,
    ManifestError,
    parse_manifest,
)
from sonde.ed25519_keys import NotAnEd25519Key, ed25519_public_key

FORMAT = "sonde-catalog-bundle"
FORMAT_VERSION = 1
# What the signature is over starts with this, so no other Sonde signature (a dispatch
# envelope) can be taken for a catalog entry's, nor one of another format version.
DOMAIN = b"sonde catalog entry v1\x00"
SIGNATURE_BYTES = 64
# A bundle travels in one gRPC message (4 MiB at most): keep room for the envelope.
MAX_BUNDLE_BYTES = 4 * 1024 * 1024 - 64 * 1024
MAX_ENTRIES = 1000


class BundleError(ValueError):
    """A bundle, or one of its entries, is refused: the message says which and why."""


@dataclass(frozen=True)
class CatalogSource:
    """One script to sign: its manifest's and its script's exact bytes."""

    manifest: bytes
    script: bytes


@dataclass(frozen=True)
class SignedEntry:
    """One catalog entry as signed: its bytes, who signed it and the signature."""

    id: str
    version: str
    manifest: bytes
    script: bytes
    key_id: str
    signature: bytes

    @property
    def name(self) -> str:
        return f"{self.id or '?'} {self.version or '?'}"


@dataclass(frozen=True)
class Bundle:
    key_id: str  # the key that signed the bundle (every entry names its own too)
    entries: tuple[SignedEntry, ...]


def key_id(public_key: ed25519.Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex: how a bundle names the key that signed it."""
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()


def raw_public_key(public_key: ed25519.Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_raw(data: bytes) -> ed25519.Ed25519PublicKey:
    if len(data) != 32:
        raise BundleError(f"an Ed25519 public key is 32 bytes, not {len(data)}")
    return ed25519.Ed25519PublicKey.from_public_bytes(data)


def public_key_pem(public_key: ed25519.Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes, where: str = "the public key") -> ed25519.Ed25519PublicKey:
    """An Ed25519 public key from PEM; BundleError naming `where` when it is not one."""
    try:
        return ed25519_public_key(pem)
    except NotAnEd25519Key as error:
        raise BundleError(f"{where} {error}") from None


def load_private_key(pem: bytes, where: str = "the key") -> ed25519.Ed25519PrivateKey:
    """An Ed25519 private key from unencrypted PEM (PKCS#8), as `sonde-server init` writes."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise BundleError(f"{where} is not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError(f"{where} is not an Ed25519 private key")
    return key


def signed_message(manifest: bytes, script: bytes) -> bytes:
    """What an entry's signature is over: the domain, then each part's length (8 bytes, big
    endian) and bytes, so that no byte can move from the manifest into the script."""
    return b"".join(
        (DOMAIN, struct.pack(">Q", len(manifest)), manifest, struct.pack(">Q", len(script)), script)
    )


def sign_entries(
    private_key: ed25519.Ed25519PrivateKey, sources: Iterable[CatalogSource]
) -> Bundle:
    """Every source signed; BundleError naming the first whose manifest is refused, or an
    id and version given twice."""
    signer = key_id(private_key.public_key())
    entries: list[SignedEntry] = []
    seen: set[tuple[str, str]] = set()
    for source in sources:
        manifest = _parsed(source.manifest, source.script, "an entry")
        if (manifest.id, manifest.version) in seen:
            raise BundleError(f"{manifest.id} {manifest.version} is given twice")
        seen.add((manifest.id, manifest.version))
        signature = private_key.sign(signed_message(source.manifest, source.script))
        entries.append(
            SignedEntry(
                manifest.id, manifest.version, source.manifest, source.script, signer, signature
            )
        )
    if len(entries) > MAX_ENTRIES:
        raise BundleError(f"a bundle holds at most {MAX_ENTRIES} entries, not {len(entries)}")
    return Bundle(signer, tuple(sorted(entries, key=lambda e: (e.id, e.version))))


def verify_entry(public_key: ed25519.Ed25519PublicKey, entry: SignedEntry) -> Manifest:
    """The entry's manifest, once its signature verifies with `public_key` and the manifest
    names the entry's own id and version; BundleError saying which entry and what is wrong."""
    if not entry.signature:
        raise BundleError(f"{entry.name}: the entry is not signed")
    expected = key_id(public_key)
    if entry.key_id != expected:
        raise BundleError(
            f"{entry.name}: signed with another key (key id {entry.key_id[:16] or 'none'}, "
            f"the pinned catalog key is {expected[:16]})"
        )
    try:
        public_key.verify(entry.signature, signed_message(entry.manifest, entry.script))
    except InvalidSignature:
        raise BundleError(
            f"{entry.name}: the signature does not verify: its manifest or script was changed "
            "after signing, or it was signed by another key"
        ) from None
    manifest = _parsed(entry.manifest, entry.script, entry.name)
    if (manifest.id, manifest.version) != (entry.id, entry.version):
        raise BundleError(
            f"{entry.name}: the bundle names it {entry.id} {entry.version} but its manifest says "
            f"{manifest.id} {manifest.version}"
        )
    return manifest


def _parsed(manifest: bytes, script: bytes, name: str) -> Manifest:
    try:
        parsed = parse_manifest(manifest)
    except ManifestError as error:
        raise BundleError(f"{name}: its manifest is refused: {error}") from None
    if not script:
        raise BundleError(f"{parsed.id} {parsed.version}: its script is empty")
    if len(script) > MAX_SCRIPT_BYTES:
        raise BundleError(
            f"{parsed.id} {parsed.version}: a script is at most {MAX_SCRIPT_BYTES} bytes, "
            f"not {len(script)}"
        )
    return parsed


# -- the JSON document ------------------------------------------------------------------------


def encode_bundle(bundle: Bundle) -> bytes:
    """The bundle as its JSON document (UTF-8, keys sorted, one entry per line)."""
    entries = [
        {
            "id": e.id,
            "version": e.version,
            "manifest": base64.b64encode(e.manifest).decode("ascii"),
            "script": base64.b64encode(e.script).decode("ascii"),
            "key_id": e.key_id,
            "signature": base64.b64encode(e.signature).decode("ascii"),
        }
        for e in bundle.entries
    ]
    lines = [json.dumps(entry, sort_keys=True) for entry in entries]
    head = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "key_id": bundle.key_id})
    body = ",\n".join(f"  {line}" for line in lines)
    text = head[:-1] + ', "entries": [\n' + body + ("\n" if lines else "") + "]}\n"
    return text.encode("utf-8")


def decode_bundle(data: bytes) -> Bundle:
    """The bundle in `data`, checked for form only (verify_entry checks each signature);
    BundleError saying what is wrong."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"a bundle is at most {MAX_BUNDLE_BYTES} bytes, not {len(data)}")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"not a catalog bundle: it is not JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleError(f"not a catalog bundle: its format is not {FORMAT!r}")
    if document.get("version") != FORMAT_VERSION:
        raise BundleError(
            f"catalog bundle version {document.get('version')!r} is not supported "
            f"(this program reads version {FORMAT_VERSION})"
        )
    items = document.get("entries")
    if not isinstance(items, list):
        raise BundleError("the bundle's entries must be a list")
    if len(items) > MAX_ENTRIES:
        raise BundleError(f"a bundle holds at most {MAX_ENTRIES} entries, not {len(items)}")
    entries = tuple(_entry(item, n) for n, item in enumerate(items))
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        if (entry.id, entry.version) in seen:
            raise BundleError(f"{entry.name} is in the bundle twice")
        seen.add((entry.id, entry.version))
    return Bundle(_string(document, "key_id", "the bundle"), entries)


def _entry(item: Any, index: int) -> SignedEntry:
    where = f"entry {index + 1}"
    if not isinstance(item, dict):
        raise BundleError(f"{where} must be an object")
    script_id, version = _string(item, "id", where), _string(item, "version", where)
    where = f"{where} ({script_id} {version})"
    manifest = _base64(item, "manifest", where, MAX_MANIFEST_BYTES)
    script = _base64(item, "script", where, MAX_SCRIPT_BYTES)
    signature = _base64(item, "signature", where, SIGNATURE_BYTES) if "signature" in item else b""
    if signature and len(signature) != SIGNATURE_BYTES:
        raise BundleError(f"{where}: an Ed25519 signature is {SIGNATURE_BYTES} bytes")
    key = item.get("key_id", "")
    if not isinstance(key, str):
        raise BundleError(f"{where}: key_id must be a string")
    return SignedEntry(script_id, version, manifest, script, key, signature)


def _string(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value or len(value) > 128:
        raise BundleError(f"{where}: {key} must be a string of 1 to 128 characters")
    return value


def _base64(table: dict[str, Any], key: str, where: str, longest: int) -> bytes:
    value = table.get(key)
    if not isinstance(value, str):
        raise BundleError(f"{where}: {key} must be base64 text")
    if len(value) > (longest + 2) // 3 * 4:
        raise BundleError(f"{where}: {key} is longer than {longest} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(f"{where}: {key} is not valid base64") from None


__all__ = [
    "Bundle",
    "BundleError",
    "CatalogSource",
    "SignedEntry",
    "decode_bundle",
    "encode_bundle",
    "key_id",
    "load_private_key",
    "load_public_key",
    "public_key_from_raw",
    "public_key_pem",
    "raw_public_key",
    "sign_entries",
    "signed_message",
    "verify_entry",
]
