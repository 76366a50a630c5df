"""A catalog folder (the repository's scripts/) read into entries: each manifest paired with
its script, with the exact bytes of both, as the signing tool signs them.

The layout is one folder per platform, the manifest beside its script under the same stem:

    scripts/windows/flush-dns.toml + scripts/windows/flush-dns.ps1
    scripts/linux/clean-temp.toml  + scripts/linux/clean-temp.sh

The stem is the script id (the manifest's `id` must equal it), the folder is one of the
manifest's platforms, and the script's suffix is its interpreter's (.ps1, .sh, .py). An id is
the script's name in the whole catalog, so it appears once, in one folder. Anything else is
refused, every problem named at once so that the author fixes them in one go: a manifest
without its script or a script without its manifest, a folder that is no platform, a file
that is neither, a link, an id that does not match its file, a script over MAX_SCRIPT_BYTES.
Files and folders whose names start with a dot are skipped (.gitkeep); files directly in the
catalog folder (a README) are not part of the catalog.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from sonde.catalog.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_SCRIPT_BYTES,
    Interpreter,
    Manifest,
    ManifestError,
    Platform,
    parse_manifest,
)

MANIFEST_SUFFIX = ".toml"
SCRIPT_SUFFIXES = frozenset(interpreter.suffix for interpreter in Interpreter)


class CatalogFolderError(ValueError):
    """The catalog folder is refused; `problems` names each thing wrong, one per line."""

    def __init__(self, root: Path, problems: list[str]) -> None:
        self.root = root
        self.problems = tuple(problems)
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        super().__init__(
            f"the catalog in {root} is refused ({count}):\n" + "\n".join(f"  {p}" for p in problems)
        )


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog script: its manifest (parsed, and its exact bytes) and its script's bytes."""

    manifest: Manifest
    platform: Platform  # the folder it was found in
    manifest_path: Path
    script_path: Path
    manifest_bytes: bytes
    script_bytes: bytes

    @property
    def id(self) -> str:
        return self.manifest.id


def shipped_catalog() -> Path:
    """The catalog as this release ships it (the repository's scripts/, installed with the
    package as sonde/catalog/shipped): what `sonde demo` signs with its own key."""
    return (Path(__file__).resolve().parent / "shipped").resolve()  # a link in a checkout


def load_catalog_folder(root: Path) -> list[CatalogEntry]:
    """Every entry under `root`, ordered by platform folder then id; CatalogFolderError
    listing every problem found if anything is wrong (no entry is returned then)."""
    problems: list[str] = []
    try:
        mode = root.lstat().st_mode
    except OSError as error:
        raise CatalogFolderError(root, [f"cannot read it: {error.strerror}"]) from None
    if not stat.S_ISDIR(mode):
        raise CatalogFolderError(root, ["it is not a folder"])
    entries: list[CatalogEntry] = []
    first_seen: dict[str, Path] = {}
    platforms = {platform.value: platform for platform in Platform}
    for folder in sorted(root.iterdir()):
        if folder.name.startswith("."):
            continue
        folder_mode = folder.lstat().st_mode
        if stat.S_ISLNK(folder_mode):
            problems.append(f"{folder.name}/: a link, not a folder (links are not followed)")
            continue
        if not stat.S_ISDIR(folder_mode):
            continue  # a README beside the platform folders
        platform = platforms.get(folder.name)
        if platform is None:
            problems.append(
                f"{folder.name}/: not a platform folder (one of {', '.join(sorted(platforms))})"
            )
            continue
        for entry in _platform_folder(root, folder, platform, problems):
            earlier = first_seen.get(entry.id)
            if earlier is not None:
                problems.append(
                    f"{_shown(root, entry.manifest_path)}: the id {entry.id} is already "
                    f"{_shown(root, earlier)}'s (an id names one script in the whole catalog)"
                )
                continue
            first_seen[entry.id] = entry.manifest_path
            entries.append(entry)
    if problems:
        raise CatalogFolderError(root, problems)
    return entries


def load_platform_folder(folder: Path, platform: Platform) -> list[CatalogEntry]:
    """Every entry of one platform's folder (scripts/linux, or a folder of a script proposed
    for `platform`), by id; CatalogFolderError listing every problem found, as above."""
    problems: list[str] = []
    try:
        mode = folder.lstat().st_mode
    except OSError as error:
        raise CatalogFolderError(folder, [f"cannot read it: {error.strerror}"]) from None
    if not stat.S_ISDIR(mode):
        raise CatalogFolderError(folder, ["it is not a folder"])
    entries = _platform_folder(folder, folder, platform, problems)
    if problems:
        raise CatalogFolderError(folder, problems)
    return entries


def _platform_folder(
    root: Path, folder: Path, platform: Platform, problems: list[str]
) -> list[CatalogEntry]:
    manifests: dict[str, Path] = {}
    scripts: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            problems.append(f"{_shown(root, path)}: a link (links are not followed)")
        elif stat.S_ISDIR(mode):
            problems.append(f"{_shown(root, path)}: a folder inside a platform folder")
        elif not stat.S_ISREG(mode):
            problems.append(f"{_shown(root, path)}: not a regular file")
        elif path.suffix == MANIFEST_SUFFIX:
            manifests[path.stem] = path
        elif path.suffix in SCRIPT_SUFFIXES:
            scripts.setdefault(path.stem, []).append(path)
        else:
            suffixes = ", ".join(sorted({MANIFEST_SUFFIX, *SCRIPT_SUFFIXES}))
            problems.append(
                f"{_shown(root, path)}: neither a manifest nor a script (suffixes {suffixes})"
            )
    entries: list[CatalogEntry] = []
    for stem in sorted(set(scripts) - set(manifests)):
        for script in scripts[stem]:
            problems.append(f"{_shown(root, script)}: a script without its manifest {stem}.toml")
    for stem, manifest_path in sorted(manifests.items()):
        found = scripts.get(stem, [])
        if not found:
            problems.append(
                f"{_shown(root, manifest_path)}: a manifest without its script "
                f"(no {stem}.ps1, {stem}.sh or {stem}.py beside it)"
            )
            continue
        if len(found) > 1:
            names = " and ".join(p.name for p in found)
            problems.append(f"{_shown(root, manifest_path)}: more than one script for it: {names}")
            continue
        entry = _entry(root, manifest_path, found[0], platform, problems)
        if entry is not None:
            entries.append(entry)
    return entries


def _entry(
    root: Path, manifest_path: Path, script_path: Path, platform: Platform, problems: list[str]
) -> CatalogEntry | None:
    before = len(problems)
    manifest_bytes = _read(root, manifest_path, MAX_MANIFEST_BYTES, "a manifest", problems)
    script_bytes = _read(root, script_path, MAX_SCRIPT_BYTES, "a script", problems)
    if manifest_bytes is None or script_bytes is None:
        return None
    try:
        manifest = parse_manifest(manifest_bytes)
    except ManifestError as error:
        problems.append(f"{_shown(root, manifest_path)}: {error}")
        return None
    where = _shown(root, manifest_path)
    if manifest.id != manifest_path.stem:
        problems.append(
            f"{where}: its id is {manifest.id} but its file is named {manifest_path.stem} "
            "(the file's stem is the script id)"
        )
    if platform not in manifest.platforms:
        listed = ", ".join(p.value for p in manifest.platforms)
        problems.append(
            f"{where}: it is in the {platform.value} folder but its platforms are {listed}"
        )
    if script_path.suffix != manifest.interpreter.suffix:
        problems.append(
            f"{where}: its interpreter is {manifest.interpreter.value}, whose scripts end in "
            f"{manifest.interpreter.suffix}, but its script is {script_path.name}"
        )
    try:
        script_bytes.decode("utf-8")
    except UnicodeDecodeError as error:
        problems.append(f"{_shown(root, script_path)}: not UTF-8 text ({error.reason})")
    if len(problems) > before:
        return None
    return CatalogEntry(
        manifest=manifest,
        platform=platform,
        manifest_path=manifest_path,
        script_path=script_path,
        manifest_bytes=manifest_bytes,
        script_bytes=script_bytes,
    )


def _read(root: Path, path: Path, limit: int, what: str, problems: list[str]) -> bytes | None:
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as error:
        problems.append(f"{_shown(root, path)}: cannot be read: {error.strerror}")
        return None
    if len(data) > limit:
        size = path.stat().st_size
        problems.append(f"{_shown(root, path)}: {size} bytes, {what} is at most {limit} bytes")
        return None
    return data


def _shown(root: Path, path: Path) -> str:
    return str(path.relative_to(root))


__all__ = ["CatalogEntry", "CatalogFolderError", "load_catalog_folder", "load_platform_folder"]
