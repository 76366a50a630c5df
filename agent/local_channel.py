"""The client end of the running agent's local help channel, for `sonde-agent help` and `fix`:
a Unix socket (agent/help_socket.py), or on Windows a named pipe (agent/help_pipe.py).

Where: --socket; else the agent of --state; else the system agent's, when it runs (on
Windows, always the service's pipe); else the agent of this user's default state folder.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from sonde.agent.help_socket import MAX_FRAME_BYTES, help_socket_path, system_socket_path
from sonde.agent.paths import default_state_dir, windows_system_state_dir
from sonde.agent.pipe_security import SYSTEM_PIPE, is_pipe_name, pipe_name
from sonde.v1 import agent_pb2


class LocalConnection(Protocol):
    def send(self, data: bytes) -> None:
        """Send the whole request; the agent answers once it has all of it."""

    def receive(self, timeout_s: float) -> bytes:
        """What came so far; b"" once the agent closed; TimeoutError if nothing came."""

    def close(self) -> None: ...


def local_address(state_dir: Path | None, given: str | None) -> str:
    if given is not None:
        return given
    if sys.platform == "win32":
        return pipe_name(state_dir, windows_system_state_dir()) if state_dir else SYSTEM_PIPE
    if state_dir is not None:
        return str(help_socket_path(state_dir))
    system = system_socket_path()
    if system is not None and system.exists():
        return str(system)
    return str(help_socket_path(default_state_dir()))


class _SocketConnection:
    def __init__(self, client: socket.socket) -> None:
        self._client = client

    def send(self, data: bytes) -> None:
        self._client.sendall(data)
        self._client.shutdown(socket.SHUT_WR)

    def receive(self, timeout_s: float) -> bytes:
        self._client.settimeout(timeout_s)
        return self._client.recv(65536)

    def close(self) -> None:
        self._client.close()


class AnswerFrames:
    """The agent's answer frames on one connection, as they come."""

    def __init__(self, client: LocalConnection) -> None:
        self._client = client
        self._data = b""
        self._closed = False

    def next(
        self, deadline: float, tick: Callable[[], None] | None = None
    ) -> agent_pb2.LocalHelpAnswer | None:
        """The next answer; None once the agent closed; TimeoutError past `deadline` (a
        time.monotonic() instant); `tick` is called each second of waiting."""
        while True:
            if len(self._data) >= 4:
                length = int.from_bytes(self._data[:4], "big")
                if length > MAX_FRAME_BYTES:
                    raise ConnectionError("the agent sent an answer too big to be one")
                if len(self._data) >= 4 + length:
                    body, self._data = self._data[4 : 4 + length], self._data[4 + length :]
                    return agent_pb2.LocalHelpAnswer.FromString(body)
            if self._closed:
                if self._data:
                    raise ConnectionError("the agent closed the connection mid-answer")
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            try:
                chunk = self._client.receive(min(1.0, left))
            except TimeoutError:
                if tick is not None:
                    tick()
                continue
            if not chunk:
                self._closed = True
            self._data += chunk


def connect(address: str, timeout_s: float) -> LocalConnection:
    """FileNotFoundError or ConnectionRefusedError when no agent listens there,
    PermissionError when this user may not reach it (or, on Windows, it is not the agent's)."""
    if sys.platform == "win32":
        if not is_pipe_name(address):
            raise ValueError(rf"{address} is not a pipe name, like {SYSTEM_PIPE}")
        from sonde.agent.win32_pipes import PipeClient

        return PipeClient.open(address, timeout_s)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.settimeout(timeout_s)
        client.connect(address)
    except BaseException:
        client.close()
        raise
    return _SocketConnection(client)
