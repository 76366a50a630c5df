"""`sonde scripts export-approved --out DIR`: the approved proposals written as a catalog
folder (DIR/<platform>/<id>.toml and its script) that `sonde-catalog sign --key KEY DIR`
signs as is, byte for byte what was reviewed.

The CLI trusts the server no more than the server trusts it: each file's name comes from the
manifest it holds, parsed here (an id is [a-z0-9-], a platform and a suffix are from closed
sets), the manifest must name the proposal's id, version and platform, a link is never
written through, and the folder written is read back as `sonde-catalog sign` reads it. A
non-empty DIR is refused unless --force (then files of the same names are replaced; anything
else in it is signed too: start from an empty folder).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.text import Text

from sonde.catalog.folder import CatalogFolderError, load_catalog_folder
from sonde.catalog.manifest import ManifestError, Platform, parse_manifest
from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.render import text
from sonde.v1 import console_pb2


def _refused(message: str) -> CliError:
    return CliError("INVALID_ARGUMENT", message)


def _target(out: Path, exported: console_pb2.ExportedScript) -> tuple[Path, Path]:
    p = exported.proposal
    try:
        manifest = parse_manifest(exported.manifest)
        platform = Platform(p.platform)
    except (ManifestError, ValueError) as error:
        raise _refused(f"proposal {p.id} is refused, nothing written for it: {error}") from None
    if (manifest.id, manifest.version) != (p.script_id, p.version) or (
        platform not in manifest.platforms
    ):
        raise _refused(
            f"proposal {p.id} is refused: its manifest is {manifest.id} {manifest.version} for "
            f"{', '.join(x.value for x in manifest.platforms)}, not what the server listed"
        )
    folder = out / platform.value
    return folder / f"{manifest.id}.toml", folder / f"{manifest.id}{manifest.interpreter.suffix}"


def _write(path: Path, data: bytes, *, replace: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if replace else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, 0o644)
    except FileExistsError:
        raise _refused(f"{path} exists already: export into an empty folder") from None
    except OSError as error:
        raise _refused(f"cannot write {path}: {error.strerror or error}") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def export_approved(args: argparse.Namespace, ctx: Context) -> int:
    out: Path = args.out
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise _refused(f"{out} is not a folder")
    if out.exists() and any(out.iterdir()) and not args.force:
        raise _refused(
            f"{out} is not empty: what is in it would be signed too; give an empty folder, "
            "or --force to write into it"
        )
    client = ctx.client()
    response = client.call(client.stub.ExportApproved, console_pb2.ExportApprovedRequest())
    targets = [(_target(out, e), e) for e in response.scripts]
    written: list[dict[str, object]] = []
    for (manifest_path, script_path), exported in targets:
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        if manifest_path.parent.is_symlink():
            raise _refused(f"{manifest_path.parent} is a link: links are not written through")
        _write(manifest_path, exported.manifest, replace=args.force)
        _write(script_path, exported.script, replace=args.force)
        p = exported.proposal
        written.append(
            {
                "proposal": p.id,
                "script_id": p.script_id,
                "version": p.version,
                "platform": p.platform,
                "risk": p.risk,
                "manifest": str(manifest_path),
                "script": str(script_path),
            }
        )
    if written:
        try:
            load_catalog_folder(out)
        except CatalogFolderError as error:
            raise _refused(f"what was written does not sign as it is: {error}") from None
    report = {"out": str(out), "written": written, "left_out": response.left_out}
    if ctx.out.json_mode:
        ctx.out.emit(report)
        return 0
    lines = [Text(f"wrote {len(written)} approved proposals to {out}")]
    lines += [
        text(
            f"  {w['platform']}/{Path(str(w['script'])).name}  {w['script_id']} {w['version']}"
            f"  (proposal {w['proposal']}, {w['risk']} risk)"
        )
        for w in written
    ]
    if response.left_out:
        lines.append(
            Text(
                f"{response.left_out} more past one bundle's size: sign and publish "
                "these, then export again"
            )
        )
    if written:
        lines.append(
            text(
                f"next, offline: sonde-catalog sign --key catalog.key {out} --out "
                "catalog.bundle, then sonde catalog publish catalog.bundle"
            )
        )
    ctx.out.show(Text("\n").join(lines))
    return 0
