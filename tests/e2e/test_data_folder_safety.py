"""What `sonde-server run` and `init` refuse in the data folder.

Real processes: a refusal names each file, its mode or owner and the command that fixes it, one
line each, and changes nothing; running the printed commands is enough for the server to start.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.deployment import Deployment, run

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root can give a file to another user (uid 65534 here)"
)
VICTIM = b"a file of someone else's, which a planted link points at\n"
_FIX = re.compile(r"; run: (.+)$")


def _initialised(tmp_path: Path, *extra: str) -> Deployment:
    sonde = Deployment(tmp_path)
    done = run(
        "sonde-server", "init", "--data", str(sonde.data), "--json",
        "--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0", *extra,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sonde.admin_token = json.loads(done.stdout)["admin_token"]
    return sonde


def _entries(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under `folder`: mode, owner, and contents (or a link's target)."""
    found: dict[str, tuple[int, int, str]] = {}
    for path in sorted([folder, *folder.rglob("*")]):
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            content = f"-> {os.readlink(path)}"
        elif stat.S_ISREG(info.st_mode):
            content = path.read_bytes().hex()
        else:
            content = "folder"
        found[str(path.relative_to(folder))] = (info.st_mode, info.st_uid, content)
    return found


def _refused(folder: Path, command: list[str], doing: str) -> list[str]:
    """Run a sonde-server command that must refuse; its problems, with folder unchanged."""
    before = _entries(folder)
    done = run("sonde-server", *command, timeout=30)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "alembic" not in done.stderr  # refused before the migration
    assert _entries(folder) == before  # no lock file, no listening.json, no mode changed
    prefix = f"sonde-server: refusing to {doing}: "
    lines = done.stderr.strip().splitlines()
    assert all(line.startswith(prefix) for line in lines), done.stderr
    return [line.removeprefix(prefix) for line in lines]


def _apply_fixes(problems: list[str]) -> None:
    for problem in problems:
        fix = _FIX.search(problem)
        assert fix is not None, f"no command in {problem!r}"
        subprocess.run(shlex.split(fix.group(1)), check=True)


def test_run_refuses_an_open_data_folder_naming_each_file_and_its_fix(tmp_path: Path) -> None:
    sonde = _initialised(tmp_path)
    data, keys = sonde.data, sonde.data / "pki"
    os.chmod(data, 0o777)
    for path, mode in (
        (keys / "ca.key", 0o666),
        (keys / "server.key", 0o666),
        (keys / "dispatch.key", 0o660),  # group-writable
        (data / "sonde.db", 0o666),
    ):
        os.chmod(path, mode)
    for side in ("sonde.db-wal", "sonde.db-shm"):  # as a crashed server leaves them
        (data / side).write_bytes(b"")
        os.chmod(data / side, 0o644)

    problems = _refused(data, ["run", "--data", str(data)], "start")

    assert problems == [
        f"{data} has mode 0777: the data folder is writable by group or others; "
        f"run: chmod 700 {data}",
        f"{keys}/ca.key has mode 0666: it is writable by group or others; "
        f"run: chmod 600 {keys}/ca.key",
        f"{keys}/dispatch.key has mode 0660: it is writable by group or others; "
        f"run: chmod 600 {keys}/dispatch.key",
        f"{keys}/server.key has mode 0666: it is writable by group or others; "
        f"run: chmod 600 {keys}/server.key",
        f"{data}/sonde.db has mode 0666: it is writable by group or others; "
        f"run: chmod 600 {data}/sonde.db",
        f"{data}/sonde.db-shm has mode 0644: it is readable by group or others; "
        f"run: chmod 600 {data}/sonde.db-shm",
        f"{data}/sonde.db-wal has mode 0644: it is readable by group or others; "
        f"run: chmod 600 {data}/sonde.db-wal",
    ]
    _apply_fixes(problems)
    sonde.start_server()
    sonde.stop()


@needs_root
def test_run_refuses_a_data_folder_owned_by_another_user(tmp_path: Path) -> None:
    sonde = _initialised(tmp_path)
    data = sonde.data
    os.chown(data, 65534, -1)
    os.chown(data / "pki" / "server.key", 65534, -1)

    problems = _refused(data, ["run", "--data", str(data)], "start")

    assert problems == [
        f"{data} is owned by uid 65534, not by the server's user (uid 0); run: chown 0 {data}",
        f"{data}/pki/server.key is owned by uid 65534, not by the server's user (uid 0); "
        f"run: chown 0 {data}/pki/server.key",
    ]
    _apply_fixes(problems)
    sonde.start_server()
    sonde.stop()


def test_run_refuses_a_data_folder_that_is_a_symbolic_link(tmp_path: Path) -> None:
    sonde = _initialised(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(sonde.data)

    problems = _refused(sonde.data, ["run", "--data", str(link)], "start")

    assert problems == [
        f"{link} is a symbolic link; the data folder must be a real folder "
        f"(give its real path, {sonde.data.resolve()}, instead)"
    ]


@pytest.mark.parametrize("name", ["server.lock", "listening.json", "sonde.db-wal"])
def test_run_follows_no_link_planted_in_the_data_folder(tmp_path: Path, name: str) -> None:
    sonde = _initialised(tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    (sonde.data / name).symlink_to(victim)

    problems = _refused(sonde.data, ["run", "--data", str(sonde.data)], "start")

    assert problems == [
        f"{sonde.data / name} is a symbolic link; it must be a plain file or folder (remove it)"
    ]
    assert victim.read_bytes() == VICTIM


def test_run_refuses_an_open_sqlite_database_outside_the_data_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    database = elsewhere / "sonde.db"
    sonde = _initialised(tmp_path, "--db", f"sqlite:///{database}")
    os.chmod(database, 0o666)
    before = _entries(elsewhere)

    problems = _refused(sonde.data, ["run", "--data", str(sonde.data)], "start")

    assert problems == [
        f"{database} has mode 0666: it is writable by group or others; run: chmod 600 {database}"
    ]
    assert _entries(elsewhere) == before  # the database was not opened, nor its mode mended


# -- init --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["link", pytest.param("stranger's", marks=needs_root)])
def test_init_refuses_a_data_folder_that_is_a_link_or_another_users(
    tmp_path: Path, kind: str
) -> None:
    target = tmp_path / "target"
    target.mkdir(mode=0o755)
    data = tmp_path / "data"
    if kind == "link":
        data.symlink_to(target)
        said = (
            f"{data} is a symbolic link; the data folder must be a real folder "
            f"(give its real path, {target}, instead)"
        )
    else:
        data = target
        os.chown(data, 65534, -1)
        said = (
            f"{data} is owned by uid 65534, not by the server's user (uid 0); run: chown 0 {data}"
        )

    problems = _refused(target, ["init", "--data", str(data)], "initialise")

    assert problems == [said]
    assert list(target.iterdir()) == []


def test_init_follows_no_link_planted_at_the_old_temporary_names(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    data = tmp_path / "data"
    (data / "pki").mkdir(parents=True, mode=0o700)
    planted = [data / "pki" / f".{name}.tmp" for name in ("ca.key", "server.key")]
    planted.append(data / "pki" / "ca.crt")  # certificates were written through their own name
    for path in planted:
        path.symlink_to(victim)

    problems = _refused(data, ["init", "--data", str(data)], "initialise")

    assert problems == [
        f"{path} is a symbolic link; it must be a plain file or folder (remove it)"
        for path in sorted(planted)
    ]
    assert victim.read_bytes() == VICTIM
