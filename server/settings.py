"""The server's data folder: what `init` writes and `run` reads."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from sonde.private_files import Folder, unsafe_entries, unsafe_file, write_private_file
from sonde.server.audit_checkpoints import CHECKPOINT_FILE
from sonde.server.audit_key import AUDIT_KEY_FILE
from sonde.server.pki import PkiPaths

DEFAULT_CONSOLE_ADDRESS = "127.0.0.1:8443"
DEFAULT_AGENT_ADDRESS = "127.0.0.1:8444"
DEFAULT_HEARTBEAT_INTERVAL_S = 15
# Agent sessions between accept and Welcome at once; more get RESOURCE_EXHAUSTED and a retry hint.
DEFAULT_MAX_CONNECTING = 512
# Connection limits (docs/server.md, "Connection limits"): seconds, and connections at once.
DEFAULT_HANDSHAKE_TIMEOUT_S = 60.0  # TCP accepted -> TLS and HTTP/2 settings done (a storm: ~30 s)
DEFAULT_IDLE_CONNECTION_TIMEOUT_S = 60.0  # no call in flight (an agent's Session always is)
DEFAULT_MAX_AGENT_CONNECTIONS = 24_000  # the 20,000-agent target of one server, with room
DEFAULT_MAX_CONSOLE_CONNECTIONS = 4_096
DEFAULT_MAX_AGENT_CONNECTIONS_PER_ADDRESS = 0  # 0: none; a site's agents share one NAT address
DEFAULT_MAX_CONSOLE_CONNECTIONS_PER_ADDRESS = 256
# The web form's listener (server/web/connections.py): a browser sends its head at once and
# opens about 6 connections a site; an office behind one NAT address has several browsers.
DEFAULT_WEB_HEAD_TIMEOUT_S = 20.0
DEFAULT_WEB_IDLE_TIMEOUT_S = 15.0
DEFAULT_MAX_WEB_CONNECTIONS = 512
DEFAULT_MAX_WEB_CONNECTIONS_PER_ADDRESS = 32
# What SQLite keeps beside its database file while it is open, or after a crash.
SQLITE_SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


def split_address(address: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port), with a message that says what is wrong."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{address!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{address!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def is_wildcard(host: str) -> bool:
    """0.0.0.0 or :: (however spelt): a listener on every address, which nobody connects to."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def check_advertised_address(address: str) -> str:
    """An address agents connect to: HOST:PORT with a real port (not 0) and a real host."""
    host, port = split_address(address)
    if port == 0:
        raise ValueError(f"{address!r}: agents cannot connect to port 0")
    if is_wildcard(host):
        raise ValueError(
            f"{address!r}: {host} means every address of the server, which agents cannot "
            "connect to; give the name or address they reach it by"
        )
    return address


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def advertised_address(listen_address: str, server_name: str) -> str:
    """What to tell agents for a listener: one on every address is reached by the server's name."""
    host, port = split_address(listen_address)
    return join_address(server_name, port) if is_wildcard(host) else listen_address


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a connection may take to get ready or sit idle, and how many each listener
    holds at once, in all and from one address (0 per address: no cap of its own)."""

    handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S
    idle_connection_timeout_s: float = DEFAULT_IDLE_CONNECTION_TIMEOUT_S
    max_agent_connections: int = DEFAULT_MAX_AGENT_CONNECTIONS
    max_console_connections: int = DEFAULT_MAX_CONSOLE_CONNECTIONS
    max_agent_connections_per_address: int = DEFAULT_MAX_AGENT_CONNECTIONS_PER_ADDRESS
    max_console_connections_per_address: int = DEFAULT_MAX_CONSOLE_CONNECTIONS_PER_ADDRESS
    web_head_timeout_s: float = DEFAULT_WEB_HEAD_TIMEOUT_S
    web_idle_timeout_s: float = DEFAULT_WEB_IDLE_TIMEOUT_S
    max_web_connections: int = DEFAULT_MAX_WEB_CONNECTIONS
    max_web_connections_per_address: int = DEFAULT_MAX_WEB_CONNECTIONS_PER_ADDRESS

    def __post_init__(self) -> None:
        timeouts = ("handshake_timeout_s", "idle_connection_timeout_s")
        for name in (*timeouts, "web_head_timeout_s", "web_idle_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds, not {getattr(self, name)}")
        for name in ("max_agent_connections", "max_console_connections", "max_web_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be 1 or more, not {getattr(self, name)}")
        per_address = ("max_agent_connections_per_address", "max_console_connections_per_address")
        for name in (*per_address, "max_web_connections_per_address"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no cap) or more, not {getattr(self, name)}")


@dataclass
class ServerConfig:
    """DIR/server.json: the addresses chosen at init; `run` flags override them."""

    console_address: str = DEFAULT_CONSOLE_ADDRESS
    agent_address: str = DEFAULT_AGENT_ADDRESS
    hosts: list[str] = field(default_factory=list)
    heartbeat_interval_s: int = DEFAULT_HEARTBEAT_INTERVAL_S
    database_url: str | None = None  # None: SQLite in the data folder
    # What enrollment strings tell agents, in order (one per replica); [] = agent_address.
    agent_addresses: list[str] = field(default_factory=list)
    # ConnectionLimits' fields, by name; what is not here has its default.
    connection_limits: dict[str, float] = field(default_factory=dict)

    def limits(self) -> ConnectionLimits:
        """The connection limits this file sets; ValueError naming what is refused and why."""
        known = {f.name for f in fields(ConnectionLimits)}
        unknown = sorted(set(self.connection_limits) - known)
        if unknown:
            raise ValueError(
                f"connection_limits: unknown {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        values: dict[str, Any] = {}
        for name, value in self.connection_limits.items():
            kind = next(f.type for f in fields(ConnectionLimits) if f.name == name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"connection_limits: {name} must be a number, not {value!r}")
            if kind == "int" and value != int(value):
                raise ValueError(f"connection_limits: {name} must be a whole number, not {value}")
            values[name] = int(value) if kind == "int" else float(value)
        try:
            return ConnectionLimits(**values)
        except ValueError as error:
            raise ValueError(f"connection_limits: {error}") from None

    @property
    def server_name(self) -> str:
        """The name agents check in the server certificate."""
        return self.hosts[0] if self.hosts else "localhost"


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "server.json"

    @property
    def listening_file(self) -> Path:
        return self.root / "listening.json"

    @property
    def database_file(self) -> Path:
        return self.root / "sonde.db"

    @property
    def pki(self) -> PkiPaths:
        return PkiPaths(self.root / "pki")

    @property
    def winrm_ca_folder(self) -> Path:
        """The CA files `sonde hosts winrm --ca-file NAME` may name, put there by whoever
        runs the server (a technician never names another of the server's files)."""
        return self.root / "winrm-ca"

    def _layout(self, database_name: str) -> Folder:
        """What `run` checks here: every key, server.json and the database are owner-only."""
        database = (database_name, *(database_name + suffix for suffix in SQLITE_SIDE_SUFFIXES))
        return Folder(
            noun="data folder",
            secret_files=frozenset((self.config_file.name, CHECKPOINT_FILE, *database)),
            subfolders={
                self.pki.root.name: Folder(
                    noun="pki folder",
                    secret_files=frozenset(
                        {*(key.name for key in self.pki.private_keys), AUDIT_KEY_FILE}
                    ),
                )
            },
        )

    def permission_problems(self, sqlite_file: Path | None, *, root_mode: bool = True) -> list[str]:
        """Everything here (and the SQLite database, wherever it is) that someone other than
        the server's user could read or change, one line each; [] when all is safe.

        FileNotFoundError when the folder does not exist.
        """
        inside = sqlite_file is None or sqlite_file.parent.resolve() == self.root.resolve()
        name = sqlite_file.name if sqlite_file is not None and inside else self.database_file.name
        found = unsafe_entries(self.root, self._layout(name), program="server", root_mode=root_mode)
        if sqlite_file is not None and not inside:
            for suffix in ("", *SQLITE_SIDE_SUFFIXES):
                found += unsafe_file(Path(f"{sqlite_file}{suffix}"), secret=True, program="server")
        return found

    def is_initialised(self) -> bool:
        return self.config_file.exists() and self.pki.ca_certificate.exists()

    def require_initialised(self) -> None:
        if not self.is_initialised():
            raise SystemExit(
                f"sonde-server: {self.root} is not a Sonde data folder; "
                f"run `sonde-server init --data {self.root}` first"
            )

    def load_config(self) -> ServerConfig:
        data = json.loads(self.config_file.read_text())
        config = ServerConfig(**data)
        for address in config.agent_addresses:
            try:
                check_advertised_address(address)
            except ValueError as error:
                raise SystemExit(
                    f"sonde-server: {self.config_file}: agent_addresses: {error}"
                ) from None
        try:
            config.limits()
        except ValueError as error:
            raise SystemExit(f"sonde-server: {self.config_file}: {error}") from None
        return config

    def save_config(self, config: ServerConfig) -> None:
        # The file can hold a database URL with a password: owner-only.
        text = json.dumps(asdict(config), indent=2) + "\n"
        write_private_file(self.config_file, text.encode("utf-8"))

    def write_listening(self, console_address: str, agent_address: str) -> None:
        payload = {
            "console_address": console_address,
            "agent_address": agent_address,
            "pid": os.getpid(),
        }
        write_private_file(self.listening_file, (json.dumps(payload) + "\n").encode("utf-8"))

    def read_listening(self) -> dict[str, str] | None:
        """The running server's bound addresses, or None when no server is running here."""
        try:
            data = json.loads(self.listening_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        pid = int(data.get("pid", 0))
        if pid <= 0 or not _process_alive(pid):
            return None
        return {"console_address": data["console_address"], "agent_address": data["agent_address"]}

    def clear_listening(self) -> None:
        self.listening_file.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
