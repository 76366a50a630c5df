"""What a proposed script must be before the server keeps it: the checks of a catalog folder
(sonde.catalog.folder), made again on the bytes the technician's CLI sent, since the server
trusts no client to have made them.

A proposed script is its platform, its script's file name, and the exact bytes of its
manifest and script. The manifest must parse (parse_manifest), list the platform, and have
the file's stem as its id; the script must end in its interpreter's suffix, be UTF-8 and
within the catalog's limits. Both must be printable text: a reviewer reads them in a
terminal, so a control character (an ANSI escape, a bidi override) is refused; tabs, line
ends (CRLF for PowerShell) and one leading byte-order mark are not control characters here.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from sonde.catalog.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_SCRIPT_BYTES,
    SCRIPT_ID,
    Manifest,
    ManifestError,
    Platform,
    parse_manifest,
)
from sonde.server.errors import InvalidArgument

MAX_SCRIPTS_PER_PROPOSAL = 100
MAX_NOTE_CHARS = 2000
_TEXT_WHITESPACE = frozenset("\n\t\r")
_BYTE_ORDER_MARK = "\ufeff"


@dataclass(frozen=True)
class ProposedFile:
    """One script as the CLI read it from the proposal's folder."""

    platform: str
    script_name: str  # its file name: flush-dns.sh
    manifest: bytes
    script: bytes


@dataclass(frozen=True)
class CheckedScript:
    manifest: Manifest
    platform: Platform
    manifest_bytes: bytes
    script_bytes: bytes


def checked_scripts(files: list[ProposedFile]) -> list[CheckedScript]:
    """Every file checked, in the order given; InvalidArgument naming the first refused."""
    if not files:
        raise InvalidArgument(
            "the proposal holds no script: give a folder with a manifest (<id>.toml) and its "
            "script beside it"
        )
    if len(files) > MAX_SCRIPTS_PER_PROPOSAL:
        raise InvalidArgument(
            f"a proposal holds at most {MAX_SCRIPTS_PER_PROPOSAL} scripts, not {len(files)}: "
            "propose them in parts"
        )
    checked = [_checked(file) for file in files]
    seen: set[str] = set()
    for script in checked:
        if script.manifest.id in seen:
            raise InvalidArgument(
                f"{script.manifest.id} is proposed twice: an id names one script in the catalog"
            )
        seen.add(script.manifest.id)
    return checked


def _checked(file: ProposedFile) -> CheckedScript:
    name = file.script_name[:80]
    stem, dot, suffix = name.rpartition(".")
    if not dot or not SCRIPT_ID.fullmatch(stem):
        raise InvalidArgument(
            f"{name!r} is not a script's file name: <id>.ps1, <id>.sh or <id>.py, the id in "
            "lower-case letters, digits and '-'"
        )
    where = f"{stem}.toml"
    if len(file.manifest) > MAX_MANIFEST_BYTES:
        raise InvalidArgument(
            f"{where}: {len(file.manifest)} bytes, a manifest is at most {MAX_MANIFEST_BYTES}"
        )
    if len(file.script) > MAX_SCRIPT_BYTES:
        raise InvalidArgument(
            f"{name}: {len(file.script)} bytes, a script is at most {MAX_SCRIPT_BYTES}"
        )
    _printable(where, file.manifest)
    _printable(name, file.script)
    try:
        manifest = parse_manifest(file.manifest)
    except ManifestError as error:
        raise InvalidArgument(f"{where}: {error}") from None
    if manifest.id != stem:
        raise InvalidArgument(
            f"{where}: its id is {manifest.id} but its file is named {stem} "
            "(the file's stem is the script id)"
        )
    if f".{suffix}" != manifest.interpreter.suffix:
        raise InvalidArgument(
            f"{where}: its interpreter is {manifest.interpreter.value}, whose scripts end in "
            f"{manifest.interpreter.suffix}, but its script is {name}"
        )
    try:
        platform = Platform(file.platform)
    except ValueError:
        known = ", ".join(p.value for p in Platform)
        raise InvalidArgument(
            f"{where}: {file.platform[:20]!r} is not a platform ({known})"
        ) from None
    if platform not in manifest.platforms:
        listed = ", ".join(p.value for p in manifest.platforms)
        raise InvalidArgument(
            f"{where}: it is proposed for {platform.value} but its platforms are {listed}"
        )
    return CheckedScript(manifest, platform, file.manifest, file.script)


def _printable(where: str, data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidArgument(
            f"{where}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    if text.startswith(_BYTE_ORDER_MARK):
        text = text[1:]
    for line, content in enumerate(text.split("\n"), start=1):
        for char in content:
            if char in _TEXT_WHITESPACE:
                continue
            if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
                raise InvalidArgument(
                    f"{where}: line {line} holds the control character U+{ord(char):04X}; "
                    "a reviewer reads it in a terminal, so only printable text is accepted"
                )
