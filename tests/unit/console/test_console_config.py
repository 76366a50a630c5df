"""The technician's config file: where it lives, its modes, and how the environment overrides it."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from sonde.server.console.config import (
    Credentials,
    check_server_address,
    config_dir,
    load_credentials,
    read_ca_file,
    remove_credentials,
    save_credentials,
)
from sonde.server.console.errors import CliError

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
OTHER_PEM = b"-----BEGIN CERTIFICATE-----\nOTHER\n-----END CERTIFICATE-----\n"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def saved(tmp_path: Path) -> Path:
    path = tmp_path / "cfg" / "sonde" / "config.json"
    save_credentials(Credentials("saved.example:8443", "saved-token", PEM), path)
    return path


def test_config_folder_follows_each_platform(tmp_path: Path) -> None:
    home = tmp_path / "home"
    linux = config_dir({"XDG_CONFIG_HOME": "/x/cfg"}, "linux", home)
    assert linux == Path("/x/cfg/sonde")
    assert config_dir({}, "linux", home) == home / ".config" / "sonde"
    # A relative XDG_CONFIG_HOME is invalid by the spec and ignored.
    assert config_dir({"XDG_CONFIG_HOME": "rel"}, "linux", home) == home / ".config" / "sonde"
    assert config_dir({"APPDATA": "C:/Users/a/AppData/Roaming"}, "win32", home) == Path(
        "C:/Users/a/AppData/Roaming/Sonde"
    )
    assert config_dir({}, "darwin", home) == home / "Library" / "Application Support" / "Sonde"


@posix_only
def test_saved_config_is_owner_only_and_self_contained(tmp_path: Path) -> None:
    path = saved(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {
        "server": "saved.example:8443",
        "token": "saved-token",
        "ca_pem": PEM.decode(),
    }
    # Written through a temporary file and a rename: nothing else is left in the folder.
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]


@posix_only
def test_saving_tightens_an_existing_wide_folder(tmp_path: Path) -> None:
    folder = tmp_path / "sonde"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    save_credentials(Credentials("h:1", "t", PEM), folder / "config.json")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_saving_again_replaces_the_file(tmp_path: Path) -> None:
    path = saved(tmp_path)
    save_credentials(Credentials("new.example:9443", "new-token", OTHER_PEM), path)
    assert load_credentials({}, path) == Credentials("new.example:9443", "new-token", OTHER_PEM)


def test_environment_overrides_the_saved_values_one_by_one(tmp_path: Path) -> None:
    path = saved(tmp_path)
    ca_file = tmp_path / "other-ca.crt"
    ca_file.write_bytes(OTHER_PEM)
    assert load_credentials({}, path) == Credentials("saved.example:8443", "saved-token", PEM)
    only_token = load_credentials({"SONDE_TOKEN": "env-token"}, path)
    assert only_token == Credentials("saved.example:8443", "env-token", PEM)
    everything = {"SONDE_SERVER": "env.example:1", "SONDE_TOKEN": "e", "SONDE_CA": str(ca_file)}
    assert load_credentials(everything, path) == Credentials("env.example:1", "e", OTHER_PEM)


def test_environment_alone_needs_no_config_file(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(PEM)
    env = {"SONDE_SERVER": "127.0.0.1:8443", "SONDE_TOKEN": "t", "SONDE_CA": str(ca_file)}
    credentials = load_credentials(env, tmp_path / "absent" / "config.json")
    assert credentials == Credentials("127.0.0.1:8443", "t", PEM)


def test_missing_config_says_which_command_to_run(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "config.json"
    with pytest.raises(CliError) as refused:
        load_credentials({"SONDE_SERVER": "127.0.0.1:8443"}, path)
    assert refused.value.code == "FAILED_PRECONDITION"
    message = refused.value.message
    assert "sonde login SERVER --token TOKEN --ca CA_FILE" in message
    assert str(path) in message
    assert message.endswith("not set: SONDE_TOKEN, SONDE_CA)")


@posix_only
def test_config_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = saved(tmp_path)
    path.chmod(0o644)
    with pytest.raises(CliError) as refused:
        load_credentials({}, path)
    assert f"chmod 600 {path}" in refused.value.message


def test_corrupt_config_says_how_to_rewrite_it(tmp_path: Path) -> None:
    path = saved(tmp_path)
    path.write_text("{not json")
    with pytest.raises(CliError, match="sonde login"):
        load_credentials({}, path)
    path.write_text(json.dumps({"server": "h:1"}))
    with pytest.raises(CliError, match="lacks server, token or ca_pem"):
        load_credentials({}, path)


def test_logout_removes_the_file(tmp_path: Path) -> None:
    path = saved(tmp_path)
    assert remove_credentials(path) is True
    assert not path.exists()
    assert remove_credentials(path) is False


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("", "empty"),
        ("https://sonde.example:8443", "scheme"),
        ("sonde.example", "HOST:PORT"),
        ("sonde.example:http", "HOST:PORT"),
        ("sonde.example:70000", "HOST:PORT"),
    ],
)
def test_bad_server_addresses_are_refused_with_the_reason(address: str, reason: str) -> None:
    with pytest.raises(CliError, match=reason):
        check_server_address(address)


def test_good_server_addresses_pass() -> None:
    assert check_server_address(" 127.0.0.1:8443 ") == "127.0.0.1:8443"
    assert check_server_address("[::1]:8443") == "[::1]:8443"


def test_ca_file_must_be_pem(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82binary")
    with pytest.raises(CliError, match="no PEM certificate"):
        read_ca_file(not_pem)
    with pytest.raises(CliError, match="cannot read CA file"):
        read_ca_file(tmp_path / "missing.crt")
    env = {"SONDE_CA": str(tmp_path / "missing.crt")}
    with pytest.raises(CliError, match="cannot read CA file"):
        load_credentials(env, tmp_path / "config.json")
