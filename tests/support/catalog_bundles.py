"""Catalog manifests, folders and signed bundles for tests: real files, real signatures."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.catalog.bundle import CatalogSource, encode_bundle, sign_entries


def manifest_text(
    script_id: str,
    version: str = "1.0.0",
    *,
    risk: str = "low",
    platform: str = "linux",
    interpreter: str = "bash",
    title: str = "A script",
    parameters: str = "",
    fixes: str = '["disk.space"]',
    verify: str = "[]",
    reboot_required: str = "false",
) -> str:
    return f"""id = "{script_id}"
version = "{version}"
title = "{title}"
description = "It does one thing, and says what it did."
platforms = ["{platform}"]
interpreter = "{interpreter}"
risk = "{risk}"
timeout_s = 60
needs_admin = false
disruptive = false
reboot_required = {reboot_required}
idempotent = true
fixes = {fixes}
verify = {verify}
{parameters}"""


def script_text(script_id: str, version: str = "1.0.0") -> str:
    return f'#!/bin/sh\n# {script_id} {version}\necho "{script_id} ran"\n'


def source(script_id: str, version: str = "1.0.0", **options: str) -> CatalogSource:
    return CatalogSource(
        manifest_text(script_id, version, **options).encode(),
        script_text(script_id, version).encode(),
    )


def write_catalog_folder(root: Path, sources: dict[str, CatalogSource]) -> Path:
    """root/linux/<id>.toml and <id>.sh for each source (keyed by id); returns root."""
    folder = root / "linux"
    folder.mkdir(parents=True, exist_ok=True)
    for script_id, entry in sources.items():
        (folder / f"{script_id}.toml").write_bytes(entry.manifest)
        (folder / f"{script_id}.sh").write_bytes(entry.script)
    return root


def signed_bundle(key: ed25519.Ed25519PrivateKey, *sources: CatalogSource) -> bytes:
    return encode_bundle(sign_entries(key, sources))
