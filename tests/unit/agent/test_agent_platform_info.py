"""What the Hello says about the machine, read without `platform` or `shutil` on Linux:
the same answers as the standard library's own functions."""

from __future__ import annotations

import os
import platform
import shutil
import stat
import sys
from pathlib import Path

import pytest

from sonde.agent.platform_info import describe_machine, find_program, read_os_release

OS_RELEASE = """\
# a comment, then the quoting os-release(5) allows
NAME="Example \\"Quoted\\" Linux"
VERSION_ID='12.4'
ID=example
PRETTY_NAME="Example \\$HOME \\`tick\\` \\\\ back"
EMPTY=
 not a field
BROKEN="unterminated
"""


def test_os_release_is_parsed_by_the_rules_platform_uses(tmp_path: Path) -> None:
    path = tmp_path / "os-release"
    path.write_text(OS_RELEASE, encoding="utf-8")
    assert read_os_release((str(tmp_path / "missing"), str(path))) == {
        "NAME": 'Example "Quoted" Linux',
        "VERSION_ID": "12.4",
        "ID": "example",
        "PRETTY_NAME": "Example $HOME `tick` \\ back",
        "EMPTY": "",
        "BROKEN": '"unterminated',
    }


def test_no_os_release_file_raises_the_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_os_release((str(tmp_path / "a"), str(tmp_path / "b")))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux reads os-release")
def test_this_machine_is_described_as_platform_describes_it() -> None:
    machine = describe_machine()
    assert machine.platform == "linux"
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    assert machine.os_name == release.get("NAME", "Linux")
    assert machine.os_version == release.get("VERSION_ID", platform.release())
    assert "sh" in machine.interpreters


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX PATH rules")
def test_programs_are_found_on_path_as_shutil_finds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runnable = tmp_path / "bin" / "runnable"
    not_runnable = tmp_path / "bin" / "not-runnable"
    runnable.parent.mkdir()
    (tmp_path / "bin" / "a-folder").mkdir()
    for path, mode in ((runnable, 0o755), (not_runnable, 0o644)):
        path.write_text("#!/bin/sh\n")
        os.chmod(path, mode)
    assert stat.S_IMODE(runnable.stat().st_mode) == 0o755
    for search in (f"{tmp_path / 'empty'}:{tmp_path / 'bin'}", str(tmp_path / "bin"), ""):
        monkeypatch.setenv("PATH", search)
        for name in ("runnable", "not-runnable", "a-folder", "absent"):
            assert find_program(name) == shutil.which(name), (search, name)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}")
    assert find_program("runnable") == str(runnable)
