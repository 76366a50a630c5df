"""The agent's pinned catalog key: the first is kept, another (or none) is refused unless the
enrollment starts over (--force), and a damaged pin is an error, never ignored."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.agent.catalog_key import (
    CatalogKeyRefused,
    check_catalog_key,
    pin_catalog_key,
    pinned_catalog_key,
)


def raw_key() -> bytes:
    return (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def raw_of(state: Path) -> bytes:
    key = pinned_catalog_key(state)
    assert key is not None
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_the_first_key_is_pinned_owner_only_and_the_same_one_again_changes_nothing(
    tmp_path: Path,
) -> None:
    assert pinned_catalog_key(tmp_path) is None
    first = raw_key()
    pin_catalog_key(tmp_path, first, replace=False)
    assert raw_of(tmp_path) == first
    assert stat.S_IMODE((tmp_path / "catalog.pub").stat().st_mode) == 0o600
    assert check_catalog_key(tmp_path, first, replace=False) is False
    pin_catalog_key(tmp_path, first, replace=False)
    assert raw_of(tmp_path) == first


def test_another_key_or_none_is_refused_unless_the_enrollment_starts_over(
    tmp_path: Path,
) -> None:
    first, second = raw_key(), raw_key()
    pin_catalog_key(tmp_path, first, replace=False)
    with pytest.raises(CatalogKeyRefused, match="the server sent another"):
        pin_catalog_key(tmp_path, second, replace=False)
    with pytest.raises(CatalogKeyRefused, match="the server sent none"):
        pin_catalog_key(tmp_path, b"", replace=False)
    assert raw_of(tmp_path) == first
    pin_catalog_key(tmp_path, second, replace=True)
    assert raw_of(tmp_path) == second
    pin_catalog_key(tmp_path, b"", replace=True)  # a server without a catalog key
    assert pinned_catalog_key(tmp_path) is None


def test_a_key_of_the_wrong_size_and_a_damaged_pin_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogKeyRefused, match="33 bytes, not an Ed25519 key"):
        pin_catalog_key(tmp_path, b"x" * 33, replace=True)
    (tmp_path / "catalog.pub").write_bytes(b"not a key")
    with pytest.raises(CatalogKeyRefused, match="is not a PEM public key"):
        pinned_catalog_key(tmp_path)
    with pytest.raises(CatalogKeyRefused, match="is not a PEM public key"):
        pin_catalog_key(tmp_path, raw_key(), replace=False)
