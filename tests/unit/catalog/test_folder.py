"""A catalog folder read into entries: pairs, exact bytes, and every refusal named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sonde.catalog.folder import CatalogFolderError, load_catalog_folder
from sonde.catalog.manifest import MAX_SCRIPT_BYTES, Platform


def manifest(script_id: str, platform: str = "linux", interpreter: str = "bash") -> str:
    return f"""
id = "{script_id}"
version = "1.0.0"
title = "A script"
description = "It does one thing."
platforms = ["{platform}"]
interpreter = "{interpreter}"
risk = "low"
timeout_s = 60
needs_admin = false
disruptive = false
reboot_required = false
idempotent = true
"""


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


def problems(root: Path) -> tuple[str, ...]:
    with pytest.raises(CatalogFolderError) as caught:
        load_catalog_folder(root)
    assert str(root) in str(caught.value)
    return caught.value.problems


def test_pairs_are_read_with_their_exact_bytes(tmp_path: Path) -> None:
    linux_manifest = manifest("clean-temp").encode() + b"# trailing comment\r\n"
    linux_script = b"#!/bin/bash\r\nset -euo pipefail\n\n"
    windows_script = "\ufeffSet-StrictMode -Version Latest\n".encode()
    write(tmp_path / "linux" / "clean-temp.toml", linux_manifest)
    write(tmp_path / "linux" / "clean-temp.sh", linux_script)
    write(tmp_path / "windows" / "flush-dns.toml", manifest("flush-dns", "windows", "powershell"))
    write(tmp_path / "windows" / "flush-dns.ps1", windows_script)
    write(tmp_path / "README.md", "not part of the catalog")
    write(tmp_path / "linux" / ".gitkeep", "")

    entries = load_catalog_folder(tmp_path)

    assert [(e.platform, e.id) for e in entries] == [
        (Platform.LINUX, "clean-temp"),
        (Platform.WINDOWS, "flush-dns"),
    ]
    assert entries[0].manifest_bytes == linux_manifest
    assert entries[0].script_bytes == linux_script
    assert entries[1].script_bytes == windows_script
    assert entries[1].script_path == tmp_path / "windows" / "flush-dns.ps1"
    assert entries[1].manifest.interpreter.value == "powershell"


def test_an_orphan_either_way_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "linux" / "lonely.toml", manifest("lonely"))
    write(tmp_path / "linux" / "stray.sh", "#!/bin/sh\n")
    found = problems(tmp_path)
    assert any("linux/lonely.toml: a manifest without its script" in p for p in found)
    assert any("linux/stray.sh: a script without its manifest stray.toml" in p for p in found)
    assert len(found) == 2


def test_an_id_that_is_not_its_file_name_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "linux" / "clean-temp.toml", manifest("clean-tmp"))
    write(tmp_path / "linux" / "clean-temp.sh", "#!/bin/sh\n")
    (found,) = problems(tmp_path)
    assert "its id is clean-tmp but its file is named clean-temp" in found


def test_a_folder_that_is_not_one_of_its_platforms_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "linux" / "flush-dns.toml", manifest("flush-dns", "windows", "powershell"))
    write(tmp_path / "linux" / "flush-dns.ps1", "Write-Output 1\n")
    (found,) = problems(tmp_path)
    assert "in the linux folder but its platforms are windows" in found


def test_a_suffix_that_is_not_its_interpreters_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "linux" / "clean-temp.toml", manifest("clean-temp", interpreter="python"))
    write(tmp_path / "linux" / "clean-temp.sh", "#!/bin/sh\n")
    (found,) = problems(tmp_path)
    assert "its interpreter is python, whose scripts end in .py, but its script is" in found


def test_the_same_id_in_two_folders_is_a_duplicate(tmp_path: Path) -> None:
    both = '\nplatforms = ["linux", "macos"]\n'
    text = manifest("clean-temp").replace('platforms = ["linux"]', both.strip())
    for folder in ("linux", "macos"):
        write(tmp_path / folder / "clean-temp.toml", text)
        write(tmp_path / folder / "clean-temp.sh", "#!/bin/sh\n")
    (found,) = problems(tmp_path)
    assert "macos/clean-temp.toml: the id clean-temp is already linux/clean-temp.toml's" in found


def test_two_scripts_for_one_manifest_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "linux" / "clean-temp.toml", manifest("clean-temp"))
    write(tmp_path / "linux" / "clean-temp.sh", "#!/bin/sh\n")
    write(tmp_path / "linux" / "clean-temp.py", "print(1)\n")
    (found,) = problems(tmp_path)
    assert "more than one script for it: clean-temp.py and clean-temp.sh" in found


def test_a_script_over_the_limit_is_refused_at_one_byte_over(tmp_path: Path) -> None:
    write(tmp_path / "linux" / "big.toml", manifest("big"))
    write(tmp_path / "linux" / "big.sh", b"#" * MAX_SCRIPT_BYTES)
    assert load_catalog_folder(tmp_path)[0].script_bytes == b"#" * MAX_SCRIPT_BYTES
    write(tmp_path / "linux" / "big.sh", b"#" * (MAX_SCRIPT_BYTES + 1))
    (found,) = problems(tmp_path)
    assert f"linux/big.sh: {MAX_SCRIPT_BYTES + 1} bytes, a script is at most" in found


def test_a_bad_manifest_says_which_file_and_why(tmp_path: Path) -> None:
    write(tmp_path / "linux" / "typo.toml", manifest("typo") + "requried = true\n")
    write(tmp_path / "linux" / "typo.sh", "#!/bin/sh\n")
    (found,) = problems(tmp_path)
    assert found.startswith("linux/typo.toml:")
    assert "unknown key requried" in found


def test_unknown_folders_files_links_and_binary_scripts_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "solaris" / "x.toml", manifest("x"))
    write(tmp_path / "linux" / "notes.txt", "hello")
    write(tmp_path / "linux" / "nested" / "a.sh", "#!/bin/sh\n")
    write(tmp_path / "linux" / "binary.toml", manifest("binary"))
    write(tmp_path / "linux" / "binary.sh", b"\xff\xfe\x00")
    write(tmp_path / "elsewhere.sh", "#!/bin/sh\n")
    write(tmp_path / "linux" / "linked.toml", manifest("linked"))
    os.symlink(tmp_path / "elsewhere.sh", tmp_path / "linux" / "linked.sh")
    found = problems(tmp_path)
    expected = [
        "solaris/: not a platform folder",
        "linux/notes.txt: neither a manifest nor a script",
        "linux/nested: a folder inside a platform folder",
        "linux/binary.sh: not UTF-8 text",
        "linux/linked.sh: a link",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in found), (text, found)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    (found,) = problems(tmp_path / "nowhere")
    assert "cannot read it" in found
