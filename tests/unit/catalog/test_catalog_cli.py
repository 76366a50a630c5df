"""sonde-catalog's refusals: one line on stderr saying what and why, exit 1; nothing written."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from sonde.catalog.cli import main
from tests.support.catalog_bundles import source, write_catalog_folder
from tests.support.deployment import program


def key_file(tmp_path: Path, key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> Path:
    path = tmp_path / "catalog.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def refusal(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0].startswith("sonde-catalog: ")
    return captured.err


def test_sign_writes_a_bundle_that_verifies_and_reports_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = key_file(tmp_path, ed25519.Ed25519PrivateKey.generate())
    folder = write_catalog_folder(tmp_path / "c", {"flush-dns": source("flush-dns")})
    out = tmp_path / "out.bundle"
    assert main(["sign", "--key", str(key), str(folder), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["entries"] == [
        {"id": "flush-dns", "version": "1.0.0", "risk": "low", "title": "A script"}
    ]
    public = tmp_path / "catalog.pub"
    assert main(["public-key", "--key", str(key)]) == 0
    public.write_text(capsys.readouterr().out)
    assert main(["verify", "--public-key", str(public), str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["key_id"] == report["key_id"]


def test_sign_refuses_a_key_that_is_not_ed25519_and_a_missing_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_catalog_folder(tmp_path / "c", {"flush-dns": source("flush-dns")})
    ecdsa = key_file(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    said = refusal(capsys, "sign", "--key", str(ecdsa), str(folder), "--out", str(tmp_path / "b"))
    assert f"{ecdsa} is not an Ed25519 private key" in said
    said = refusal(capsys, "sign", "--key", str(tmp_path / "nope.key"), str(folder))
    assert "cannot read the catalog key" in said
    assert not (tmp_path / "b").exists()


def test_sign_refuses_a_folder_that_is_not_a_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = key_file(tmp_path, ed25519.Ed25519PrivateKey.generate())
    said = refusal(capsys, "sign", "--key", str(key), str(tmp_path / "missing"))
    assert "is not a folder" in said
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no scripts" in refusal(capsys, "sign", "--key", str(key), str(empty))
    broken = write_catalog_folder(tmp_path / "broken", {"flush-dns": source("flush-dns")})
    (broken / "linux" / "flush-dns.sh").unlink()
    said = refusal(capsys, "sign", "--key", str(key), str(broken), "--out", str(tmp_path / "b"))
    assert "nothing signed: the catalog in" in said
    assert not (tmp_path / "b").exists()


def test_verify_refuses_what_is_not_a_bundle_or_not_a_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_text("hello")
    key = key_file(tmp_path, ed25519.Ed25519PrivateKey.generate())
    said = refusal(capsys, "verify", "--public-key", str(key), str(garbage))
    assert "is not a PEM public key" in said
    assert main(["public-key", "--key", str(key)]) == 0
    public = tmp_path / "catalog.pub"
    public.write_text(capsys.readouterr().out)
    said = refusal(capsys, "verify", "--public-key", str(public), str(garbage))
    assert "not a catalog bundle: it is not JSON" in said


def test_a_reader_that_goes_away_ends_it_quietly_with_141(tmp_path: Path) -> None:
    key = key_file(tmp_path, ed25519.Ed25519PrivateKey.generate())
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -1` that has already read its line
    try:
        done = subprocess.run(
            [*program("sonde-catalog"), "public-key", "--key", str(key)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert done.stderr == b""
