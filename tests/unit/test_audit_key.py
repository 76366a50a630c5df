"""The audit key file: made owner-only and once, refused when others can read it, when it is
a link or the wrong size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sonde.server.audit_key import (
    AuditKeyProblem,
    audit_key_path,
    create_audit_key,
    ensure_audit_key,
    load_audit_key,
)


def test_a_key_is_made_once_owner_only_and_read_back(tmp_path: Path) -> None:
    key, made = ensure_audit_key(tmp_path)
    assert made
    path = audit_key_path(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    again, made_again = ensure_audit_key(tmp_path)
    assert (again, made_again) == (key, False)
    with pytest.raises(AuditKeyProblem, match="exists already: not overwriting"):
        create_audit_key(path)


def test_a_key_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    ensure_audit_key(tmp_path)
    path = audit_key_path(tmp_path)
    path.chmod(0o644)
    with pytest.raises(AuditKeyProblem, match=f"mode 644\\): chmod 600 {path}"):
        load_audit_key(path)


def test_a_planted_link_is_neither_followed_nor_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"x" * 32)
    os.chmod(elsewhere, 0o600)
    audit_key_path(tmp_path).symlink_to(elsewhere)
    with pytest.raises(AuditKeyProblem, match="cannot read the audit key"):
        load_audit_key(audit_key_path(tmp_path))
    with pytest.raises(AuditKeyProblem, match="exists already"):
        create_audit_key(audit_key_path(tmp_path))
    assert elsewhere.read_bytes() == b"x" * 32


def test_a_damaged_key_says_to_restore_it(tmp_path: Path) -> None:
    path = audit_key_path(tmp_path)
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(AuditKeyProblem, match="32 bytes, this file has 5; restore it"):
        load_audit_key(path)
