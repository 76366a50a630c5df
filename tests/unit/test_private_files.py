"""sonde.private_files: writes that follow no planted name, and the checks both sides run."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from sonde.agent import state
from sonde.private_files import Folder, unsafe_entries, unsafe_file, write_private_file
from sonde.server import pki
from sonde.server.settings import DataDir, ServerConfig

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")

VICTIM = b"a file of someone else's, which a planted link points at\n"
LAYOUT = Folder(
    noun="data folder",
    secret_files=frozenset({"server.json"}),
    subfolders={
        "pki": Folder(noun="pki folder", secret_files=frozenset({"ca.key"})),
        "outbox": Folder(secret=True),
    },
)
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root can give a file to another user"
)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(VICTIM)
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _plain_file(path: Path) -> bytes:
    assert stat.S_ISREG(os.lstat(path).st_mode), f"{path} is not a plain file"
    assert _mode(path) == 0o600, f"{path} has mode {_mode(path):04o}"
    return path.read_bytes()


# -- writing -----------------------------------------------------------------------------------


def test_every_write_takes_a_new_unguessable_temporary_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: list[str] = []
    replace = os.replace

    def recording(source: str | Path, target: str | Path) -> None:
        renamed.append(Path(source).name)
        replace(source, target)

    monkeypatch.setattr(os, "replace", recording)
    for _ in range(3):
        write_private_file(tmp_path / "agent.key", b"key")
    assert len(set(renamed)) == 3
    for name in renamed:
        prefix, random_part = name.split(".tmp-")
        assert prefix == ".agent.key"
        assert len(random_part) == 16  # 64 random bits, in hex
        assert set(random_part) <= set("0123456789abcdef")


def test_a_link_planted_at_the_agents_old_temporary_name_is_not_followed(
    tmp_path: Path, victim: Path
) -> None:
    planted = tmp_path / f".agent.key.tmp-{os.getpid()}"
    planted.symlink_to(victim)
    state.write_private_file(tmp_path / "agent.key", b"the agent's private key")
    assert victim.read_bytes() == VICTIM
    assert _plain_file(tmp_path / "agent.key") == b"the agent's private key"
    assert planted.is_symlink()  # not ours: left alone


def test_a_temporary_name_that_exists_is_refused_not_opened(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "urandom", lambda n: b"\x00" * n)
    planted = tmp_path / ".agent.key.tmp-0000000000000000"
    planted.symlink_to(victim)
    with pytest.raises(FileExistsError):
        write_private_file(tmp_path / "agent.key", b"key")
    assert victim.read_bytes() == VICTIM
    assert planted.is_symlink()
    assert not (tmp_path / "agent.key").exists()


def test_init_follows_no_link_planted_in_the_pki_folder(tmp_path: Path, victim: Path) -> None:
    paths = pki.PkiPaths(tmp_path / "pki")
    paths.root.mkdir(mode=0o700)
    written = (*paths.private_keys, paths.ca_certificate, paths.server_certificate)
    for path in written:
        path.with_name(f".{path.name}.tmp").symlink_to(victim)  # the old temporary names
    paths.ca_certificate.symlink_to(victim)  # certificates were written through their names
    paths.server_certificate.symlink_to(victim)

    pki.initialise(paths, ["sonde.example.lan"])

    assert victim.read_bytes() == VICTIM
    for path in written:
        assert _plain_file(path).startswith(b"-----BEGIN ")


def test_server_json_and_listening_json_follow_no_planted_link(
    tmp_path: Path, victim: Path
) -> None:
    data = DataDir(tmp_path)
    data.config_file.symlink_to(victim)  # a link at the final name is replaced, not followed
    (tmp_path / "listening.tmp").symlink_to(victim)  # the old temporary name
    data.save_config(ServerConfig())
    data.write_listening("127.0.0.1:1", "127.0.0.1:2")
    assert victim.read_bytes() == VICTIM
    assert data.load_config() == ServerConfig()
    assert b"127.0.0.1:2" in _plain_file(data.listening_file)


# -- checking ----------------------------------------------------------------------------------


def _tree(tmp_path: Path) -> Path:
    """A safe folder laid out as LAYOUT says."""
    root = tmp_path / "data"
    for folder in (root, root / "pki", root / "outbox"):
        folder.mkdir(mode=0o700)
        os.chmod(folder, 0o700)
    for path in (root / "server.json", root / "pki" / "ca.key", root / "outbox" / "1.result"):
        write_private_file(path, b"secret")
    write_private_file(root / "pki" / "ca.crt", b"public")
    os.chmod(root / "pki" / "ca.crt", 0o644)
    return root


def _problems(root: Path, *, root_mode: bool = True) -> list[str]:
    return unsafe_entries(root, LAYOUT, program="server", root_mode=root_mode)


def test_a_safe_folder_has_no_problem(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.chmod(root, 0o755)  # others may list it: nothing in it is theirs to read
    os.chmod(root / "pki", 0o755)
    assert _problems(root) == []


def test_a_missing_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        _problems(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("entry", "mode", "said"),
    [
        (".", 0o777, "mode 0777: the data folder is writable by group or others; run: chmod 700"),
        ("pki", 0o770, "mode 0770: the pki folder is writable by group or others; run: chmod 700"),
        ("pki/ca.key", 0o660, "mode 0660: it is writable by group or others; run: chmod 600"),
        ("pki/ca.key", 0o640, "mode 0640: it is readable by group or others; run: chmod 600"),
        ("server.json", 0o666, "mode 0666: it is writable by group or others; run: chmod 600"),
        ("pki/ca.crt", 0o646, "mode 0646: it is writable by group or others; run: chmod 644"),
        ("outbox", 0o750, "mode 0750: it is readable by group or others; run: chmod 700"),
        ("outbox/1.result", 0o604, "mode 0604: it is readable by group or others; run: chmod 600"),
    ],
)
def test_each_unsafe_mode_is_one_line_naming_the_path_and_the_fix(
    tmp_path: Path, entry: str, mode: int, said: str
) -> None:
    root = _tree(tmp_path)
    path = root if entry == "." else root / entry
    os.chmod(path, mode)
    assert _problems(root) == [f"{path} has {said} {path}"]


def test_every_problem_is_listed_in_order(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.chmod(root, 0o777)
    os.chmod(root / "pki" / "ca.key", 0o666)
    os.chmod(root / "server.json", 0o644)
    (root / "stranger").write_bytes(b"")
    os.chmod(root / "stranger", 0o666)
    assert _problems(root) == [
        f"{root} has mode 0777: the data folder is writable by group or others; "
        f"run: chmod 700 {root}",
        f"{root}/pki/ca.key has mode 0666: it is writable by group or others; "
        f"run: chmod 600 {root}/pki/ca.key",
        f"{root}/server.json has mode 0644: it is readable by group or others; "
        f"run: chmod 600 {root}/server.json",
        f"{root}/stranger has mode 0666: it is writable by group or others; "
        f"run: chmod 644 {root}/stranger",
    ]


def test_a_folder_that_is_a_link_is_refused_and_not_entered(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.chmod(root / "pki" / "ca.key", 0o666)  # would be a second line if the link were followed
    link = tmp_path / "link"
    link.symlink_to(root)
    assert _problems(link) == [
        f"{link} is a symbolic link; the data folder must be a real folder "
        f"(give its real path, {root}, instead)"
    ]


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_bytes(b"")
    assert _problems(tmp_path / "data") == [
        f"{tmp_path / 'data'} is not a folder; the data folder must be one"
    ]


@pytest.mark.parametrize("entry", ["pki/ca.key", "pki", "server.lock"])
def test_a_link_inside_is_refused_and_not_followed(
    tmp_path: Path, victim: Path, entry: str
) -> None:
    root = _tree(tmp_path)
    path = root / entry
    if path.is_dir():
        os.rename(path, tmp_path / "moved")  # a folder of the right shape elsewhere
    else:
        path.unlink(missing_ok=True)
    path.symlink_to(victim if entry != "pki" else tmp_path / "moved")
    assert _problems(root) == [
        f"{path} is a symbolic link; it must be a plain file or folder (remove it)"
    ]


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.mkfifo(root / "server.lock")
    assert _problems(root) == [f"{root}/server.lock is neither a file nor a folder (remove it)"]


def test_a_stranger_folder_is_checked_but_not_entered(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "backup").mkdir(mode=0o755)
    (root / "backup" / "old.key").write_bytes(b"")
    os.chmod(root / "backup" / "old.key", 0o666)
    assert _problems(root) == []
    os.chmod(root / "backup", 0o777)
    assert _problems(root) == [
        f"{root}/backup has mode 0777: the data folder is writable by group or others; "
        f"run: chmod 700 {root}/backup"
    ]


def test_a_secret_folder_is_owner_only_all_the_way_down(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "outbox" / "deeper").mkdir(mode=0o755)
    os.chmod(root / "outbox" / "deeper", 0o755)
    assert _problems(root) == [
        f"{root}/outbox/deeper has mode 0755: it is readable by group or others; "
        f"run: chmod 700 {root}/outbox/deeper"
    ]


def test_without_root_mode_only_the_folders_own_mode_is_left_out(
    tmp_path: Path, victim: Path
) -> None:
    root = _tree(tmp_path)
    os.chmod(root, 0o777)
    assert _problems(root, root_mode=False) == []
    (root / "server.json").unlink()
    (root / "server.json").symlink_to(victim)
    assert _problems(root, root_mode=False) == [
        f"{root}/server.json is a symbolic link; it must be a plain file or folder (remove it)"
    ]


@needs_root
def test_another_users_folder_and_files_are_refused_with_the_chown(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.chown(root, 65534, -1)
    os.chown(root / "pki" / "ca.key", 65534, -1)
    assert _problems(root) == [
        f"{root} is owned by uid 65534, not by the server's user (uid 0); run: chown 0 {root}",
        f"{root}/pki/ca.key is owned by uid 65534, not by the server's user (uid 0); "
        f"run: chown 0 {root}/pki/ca.key",
    ]
    assert _problems(root, root_mode=False) == _problems(root)  # the owner is always checked


def test_one_file_outside_the_folder(tmp_path: Path, victim: Path) -> None:
    database = tmp_path / "sonde.db"
    assert unsafe_file(database, secret=True, program="server") == []  # not there yet
    write_private_file(database, b"")
    assert unsafe_file(database, secret=True, program="server") == []
    os.chmod(database, 0o644)
    assert unsafe_file(database, secret=True, program="server") == [
        f"{database} has mode 0644: it is readable by group or others; run: chmod 600 {database}"
    ]
    database.unlink()
    database.symlink_to(victim)
    assert unsafe_file(database, secret=True, program="server") == [
        f"{database} is a symbolic link; it must be a plain file or folder (remove it)"
    ]


def test_the_agents_check_names_every_problem_not_only_the_first(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    for name in ("agent.key", "agent.json"):
        write_private_file(state_dir / name, b"{}")
        os.chmod(state_dir / name, 0o644)
    with pytest.raises(state.UnsafePermissions) as refused:
        state.check_permissions(state_dir)
    assert str(refused.value).splitlines() == [
        f"refusing to start: {state_dir}/agent.json has mode 0644: it is readable by group or "
        f"others; run: chmod 600 {state_dir}/agent.json",
        f"refusing to start: {state_dir}/agent.key has mode 0644: it is readable by group or "
        f"others; run: chmod 600 {state_dir}/agent.key",
    ]
