"""Whatever bytes arrive as a bundle, decoding and verifying end in a Bundle or a BundleError
naming the problem, never another exception (a server publishing a hostile upload, an agent
reading a hostile entry); and no changed byte of a signed entry verifies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from sonde.catalog.bundle import (
    BundleError,
    SignedEntry,
    decode_bundle,
    encode_bundle,
    sign_entries,
    verify_entry,
)
from tests.support.catalog_bundles import source

KEY = ed25519.Ed25519PrivateKey.generate()
SIGNED = sign_entries(KEY, [source("flush-dns")])
DOCUMENT: dict[str, Any] = json.loads(encode_bundle(SIGNED))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def decode_and_verify(data: bytes) -> None:
    try:
        bundle = decode_bundle(data)
    except BundleError:
        return
    for entry in bundle.entries:
        try:
            verify_entry(KEY.public_key(), entry)
        except BundleError:
            continue


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    decode_and_verify(data)


@settings(max_examples=500, deadline=None)
@given(key=st.sampled_from(["format", "version", "key_id", "entries"]), value=json_values)
def test_any_top_level_field_replaced_is_refused_cleanly(key: str, value: object) -> None:
    decode_and_verify(json.dumps({**DOCUMENT, key: value}).encode())


@settings(max_examples=500, deadline=None)
@given(
    key=st.sampled_from(["id", "version", "manifest", "script", "key_id", "signature"]),
    value=json_values,
)
def test_any_entry_field_replaced_is_refused_cleanly(key: str, value: object) -> None:
    entry = {**DOCUMENT["entries"][0], key: value}
    decode_and_verify(json.dumps({**DOCUMENT, "entries": [entry]}).encode())


@settings(max_examples=300, deadline=None)
@given(
    part=st.sampled_from(["manifest", "script"]),
    index=st.integers(0, 10_000),
    bit=st.integers(0, 7),
)
def test_no_flipped_bit_of_a_signed_entry_verifies(part: str, index: int, bit: int) -> None:
    entry = SIGNED.entries[0]
    data = bytearray(getattr(entry, part))
    data[index % len(data)] ^= 1 << bit
    changed = SignedEntry(**{**entry.__dict__, part: bytes(data)})
    with pytest.raises(BundleError, match="the signature does not verify"):
        verify_entry(KEY.public_key(), changed)
