"""sonde-catalog: sign the script catalog, check a signed bundle, show the catalog public key.

It runs where the catalog key is (in production an offline machine, never the server):

    sonde-catalog sign --key catalog.key scripts/ --out catalog.bundle
    sonde-catalog verify --public-key catalog.pub catalog.bundle
    sonde-catalog public-key --key catalog.key > catalog.pub

Exit 0 when done, 1 when refused (one line on stderr saying what and why), 2 on bad usage,
141 when stdout's reader went away (`sonde-catalog sign ... | head -1`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sonde.catalog.bundle import (
    Bundle,
    BundleError,
    CatalogSource,
    decode_bundle,
    encode_bundle,
    key_id,
    load_private_key,
    load_public_key,
    public_key_pem,
    sign_entries,
    verify_entry,
)
from sonde.catalog.folder import CatalogFolderError, load_catalog_folder
from sonde.catalog.manifest import Manifest
from sonde.pipes import quiet_when_piped
from sonde.private_files import write_private_file

PROGRAM = "sonde-catalog"


class Refused(Exception):
    """One line for stderr: what was refused and why."""


def catalog_sources(folder: Path) -> list[CatalogSource]:
    """Every entry of the catalog folder, as its exact bytes (sonde.catalog.folder)."""
    if not folder.is_dir():
        raise Refused(f"{folder} is not a folder")
    try:
        entries = load_catalog_folder(folder)
    except CatalogFolderError as error:
        raise Refused(f"nothing signed: {error}") from None
    if not entries:
        raise Refused(f"{folder} holds no scripts (expected windows/ or linux/ with manifests)")
    return [CatalogSource(e.manifest_bytes, e.script_bytes) for e in entries]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise Refused(f"cannot read {what} {path}: {error.strerror or error}") from None


def _summary(bundle: Bundle, manifests: Sequence[Manifest]) -> list[dict[str, str]]:
    return [
        {"id": m.id, "version": m.version, "risk": m.risk.value, "title": m.title}
        for m in manifests
    ]


def sign(arguments: argparse.Namespace) -> int:
    key = load_private_key(_read(arguments.key, "the catalog key"), str(arguments.key))
    sources = catalog_sources(arguments.folder)
    try:
        bundle = sign_entries(key, sources)
    except BundleError as error:
        raise Refused(f"nothing signed: {error}") from None
    manifests = [verify_entry(key.public_key(), entry) for entry in bundle.entries]
    data = encode_bundle(bundle)
    out: Path = arguments.out
    try:
        write_private_file(out, data)
        out.chmod(0o644)  # a bundle is public: signed, with no secret in it
    except OSError as error:
        raise Refused(f"cannot write {out}: {error.strerror or error}") from None
    if arguments.json:
        report = {
            "bundle": str(out),
            "key_id": bundle.key_id,
            "entries": _summary(bundle, manifests),
        }
        print(json.dumps(report, indent=2))
    else:
        print(f"signed {len(manifests)} scripts with key {bundle.key_id[:16]} into {out}")
        for manifest in manifests:
            print(f"  {manifest.id} {manifest.version} ({manifest.risk.value})")
    return 0


def verify(arguments: argparse.Namespace) -> int:
    public_key = load_public_key(
        _read(arguments.public_key, "the public key"), str(arguments.public_key)
    )
    bundle = decode_bundle(_read(arguments.bundle, "the bundle"))
    manifests = [verify_entry(public_key, entry) for entry in bundle.entries]
    if arguments.json:
        report = {"key_id": key_id(public_key), "entries": _summary(bundle, manifests)}
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{arguments.bundle}: {len(manifests)} scripts, every one signed by key "
            f"{key_id(public_key)[:16]}"
        )
    return 0


def public_key(arguments: argparse.Namespace) -> int:
    key = load_private_key(_read(arguments.key, "the catalog key"), str(arguments.key))
    pem = public_key_pem(key.public_key()).decode("ascii")
    if arguments.json:
        print(json.dumps({"key_id": key_id(key.public_key()), "public_key": pem}, indent=2))
    else:
        print(pem, end="")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROGRAM, description="Sign the Sonde script catalog with the catalog key."
    )
    commands = top.add_subparsers(dest="command", required=True)
    signing = commands.add_parser("sign", help="sign every script of a catalog folder")
    signing.add_argument("--key", type=Path, required=True, help="the catalog private key (PEM)")
    signing.add_argument("folder", type=Path, help="the catalog folder (windows/, linux/)")
    signing.add_argument(
        "--out", type=Path, default=Path("catalog.bundle"), help="the bundle to write"
    )
    signing.add_argument("--json", action="store_true", help="print the result as JSON")
    signing.set_defaults(run=sign)
    checking = commands.add_parser("verify", help="check every signature of a bundle")
    checking.add_argument("--public-key", type=Path, required=True, help="catalog public key")
    checking.add_argument("bundle", type=Path)
    checking.add_argument("--json", action="store_true", help="print the result as JSON")
    checking.set_defaults(run=verify)
    showing = commands.add_parser("public-key", help="print the catalog public key (PEM)")
    showing.add_argument("--key", type=Path, required=True, help="the catalog private key (PEM)")
    showing.add_argument("--json", action="store_true", help="print the key id and key as JSON")
    showing.set_defaults(run=public_key)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """The program: exit code 141, and no traceback, when stdout's reader goes away."""
    return quiet_when_piped(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    arguments = parser().parse_args(argv)
    try:
        code: int = arguments.run(arguments)
    except (Refused, BundleError) as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
