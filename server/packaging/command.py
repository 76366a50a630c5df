"""`sonde-server package windows`: the agent's MSI, built on this machine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import sonde
from sonde.server import exit_codes
from sonde.server.packaging.windows_layout import Runtime
from sonde.server.packaging.windows_msi import BuiltMsi, Signing, WindowsBuild, build_windows_msi
from sonde.server.packaging.windows_wxs import PackageRefused


def add_package_parser(commands: Any) -> None:
    """Add `package windows` to sonde-server's subcommands."""
    package = commands.add_parser("package", help="build the agent's installers")
    kinds = package.add_subparsers(dest="package_command", required=True)
    windows = kinds.add_parser(
        "windows",
        help="the agent's MSI for Windows (wixl, msitools; osslsigncode to sign)",
        description="Build the Windows agent MSI: the embeddable CPython you name, the agent's "
        "win_amd64 wheels, the agent and its service. docs/windows-package.md has the msiexec, "
        "GPO and Intune lines.",
    )
    windows.add_argument(
        "--python-embed",
        type=Path,
        required=True,
        metavar="ZIP",
        help="python-3.X.Y-embed-amd64.zip from python.org",
    )
    windows.add_argument(
        "--sha256", required=True, metavar="HEX", help="the SHA-256 the runtime zip must have"
    )
    windows.add_argument("--out", type=Path, required=True, metavar="FILE", help="the MSI to write")
    windows.add_argument(
        "--version",
        default=sonde.__version__,
        help=f"the MSI's version, X.Y.Z (default: this release, {sonde.__version__})",
    )
    windows.add_argument(
        "--wheels",
        type=Path,
        metavar="DIR",
        help="win_amd64 wheels already fetched (default: pip downloads them now)",
    )
    windows.add_argument(
        "--service-program",
        type=Path,
        metavar="EXE",
        help="a service program of your own instead of pywin32's pythonservice.exe",
    )
    windows.add_argument(
        "--sign",
        nargs=2,
        type=Path,
        metavar=("CERT", "KEY"),
        help="sign the MSI with this code-signing certificate and key (PEM)",
    )
    windows.add_argument("--json", action="store_true", help="print the result as JSON")
    windows.set_defaults(handler=cmd_package_windows)


def _progress(line: str) -> None:
    print(f"sonde-server: {line}", file=sys.stderr, flush=True)


def _report(built: BuiltMsi) -> dict[str, Any]:
    return {
        "path": str(built.path),
        "sha256": built.sha256,
        "size": built.size,
        "version": built.version,
        "product_code": built.product_code,
        "files": built.files,
        "signed": built.signed,
    }


def cmd_package_windows(args: argparse.Namespace) -> int:
    build = WindowsBuild(
        runtime=Runtime(zip_path=args.python_embed, sha256=args.sha256),
        out=args.out,
        version=args.version,
        wheels=args.wheels,
        service_program=args.service_program,
        signing=Signing(*args.sign) if args.sign else None,
    )
    try:
        built = build_windows_msi(build, _progress)
    except PackageRefused as refusal:
        print(f"sonde-server: {refusal}", file=sys.stderr)
        return exit_codes.ERROR
    if args.json:
        print(json.dumps(_report(built), indent=2))
    else:
        print(f"wrote {built.path} ({built.size} bytes, {built.files} files)")
        print(f"version {built.version}, product code {built.product_code}")
        print(f"sha256 {built.sha256}" + ("" if built.signed else " (not signed)"))
    return exit_codes.OK
