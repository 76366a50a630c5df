"""Where the technician's server address, API token and CA live, and how they are found.

`sonde login` saves them in the user's config folder (one owner-only JSON file that carries the
CA certificate itself, so it stays valid when the original CA file moves); SONDE_SERVER,
SONDE_TOKEN and SONDE_CA (a path to a PEM file) override the saved values one by one.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sonde.server.console.errors import CliError

CONFIG_FILE_NAME = "config.json"
LOGIN_HINT = (
    "run `sonde login SERVER --token TOKEN --ca CA_FILE` "
    "(or set SONDE_SERVER, SONDE_TOKEN and SONDE_CA)"
)
_PEM_MARKER = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class Credentials:
    """What the CLI needs to reach the console API as one technician."""

    server: str
    token: str
    ca_pem: bytes

    def to_json(self) -> dict[str, str]:
        return {"server": self.server, "token": self.token, "ca_pem": self.ca_pem.decode("ascii")}


def config_dir(
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    home: Path | None = None,
) -> Path:
    """The per-user folder that holds config.json, following each OS's convention."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    home = Path.home() if home is None else home
    if platform == "win32":
        appdata = env.get("APPDATA")
        base = Path(appdata) if appdata else home / "AppData" / "Roaming"
        return base / "Sonde"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "Sonde"
    xdg = env.get("XDG_CONFIG_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".config"
    return base / "sonde"


def config_path(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    return config_dir(env, platform) / CONFIG_FILE_NAME


def check_server_address(server: str) -> str:
    """Refuse an address that gRPC could not dial, with the reason."""
    server = server.strip()
    if not server:
        raise CliError("INVALID_ARGUMENT", "the server address is empty: expected HOST:PORT")
    if "://" in server:
        raise CliError(
            "INVALID_ARGUMENT",
            f"server address {server!r} has a scheme: give HOST:PORT, e.g. sonde.example.org:8443",
        )
    host, sep, port = server.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(
            "INVALID_ARGUMENT",
            f"server address {server!r} is not HOST:PORT (e.g. 127.0.0.1:8443)",
        )
    return server


def read_ca_file(path: Path) -> bytes:
    """Read a CA certificate file, refusing anything that is not PEM."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CliError(
            "INVALID_ARGUMENT", f"cannot read CA file {path}: {error.strerror or error}"
        ) from None
    if _PEM_MARKER.encode() not in data:
        raise CliError(
            "INVALID_ARGUMENT",
            f"CA file {path} holds no PEM certificate (expected the server's pki/ca.crt)",
        )
    return data


def save_credentials(credentials: Credentials, path: Path | None = None) -> Path:
    """Write the config atomically: an owner-only file (0600) in an owner-only folder (0700)."""
    path = config_path() if path is None else path
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sys.platform != "win32":
        # Our own folder: tighten it even when an earlier tool created it wider.
        folder.chmod(0o700)
    data = json.dumps(credentials.to_json(), indent=2).encode() + b"\n"
    # mkstemp creates the file 0600, so the token is never readable by others, not even briefly.
    fd, temporary = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def remove_credentials(path: Path | None = None) -> bool:
    """Delete the saved config; False when there was none."""
    path = config_path() if path is None else path
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _read_saved(path: Path) -> dict[str, str] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if sys.platform != "win32" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CliError(
            "FAILED_PRECONDITION",
            f"config file {path} is readable by other users and holds your API token: "
            f"run `chmod 600 {path}` (and consider a new token)",
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CliError(
            "FAILED_PRECONDITION",
            f"config file {path} cannot be read ({error}): {LOGIN_HINT} to write it again",
        ) from None
    if not isinstance(raw, dict) or not all(
        isinstance(raw.get(key), str) for key in ("server", "token", "ca_pem")
    ):
        raise CliError(
            "FAILED_PRECONDITION",
            f"config file {path} lacks server, token or ca_pem: {LOGIN_HINT} to write it again",
        )
    return {key: raw[key] for key in ("server", "token", "ca_pem")}


def load_credentials(env: Mapping[str, str] | None = None, path: Path | None = None) -> Credentials:
    """The saved config with SONDE_SERVER / SONDE_TOKEN / SONDE_CA applied on top."""
    env = os.environ if env is None else env
    path = config_path(env) if path is None else path
    server = env.get("SONDE_SERVER", "").strip()
    token = env.get("SONDE_TOKEN", "").strip()
    ca_file = env.get("SONDE_CA", "").strip()
    ca_pem = read_ca_file(Path(ca_file)) if ca_file else b""
    if not (server and token and ca_pem):
        saved = _read_saved(path)
        if saved is None:
            missing = [
                name
                for name, value in (
                    ("SONDE_SERVER", server),
                    ("SONDE_TOKEN", token),
                    ("SONDE_CA", ca_pem),
                )
                if not value
            ]
            raise CliError(
                "FAILED_PRECONDITION",
                f"not logged in: {LOGIN_HINT} (no config file at {path}; "
                f"not set: {', '.join(missing)})",
            )
        server = server or saved["server"]
        token = token or saved["token"]
        ca_pem = ca_pem or saved["ca_pem"].encode("ascii")
    return Credentials(server=check_server_address(server), token=token, ca_pem=ca_pem)
