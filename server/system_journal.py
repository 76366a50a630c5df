"""Entries for the system journal (systemd-journald), over its native socket protocol.

One datagram an entry, each field `NAME=value` on a line of its own, or, for a value that holds
a newline, the name, a newline, the value's length as 64-bit little-endian and the value
(systemd's "Native Journal Protocol"). No journal (no socket: not systemd, a container,
Windows): send() says so and does nothing. SONDE_JOURNAL_SOCKET names another socket (a
journal in a container's mount, a test's listener).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
JOURNAL_SOCKET_VARIABLE = "SONDE_JOURNAL_SOCKET"
IDENTIFIER = "sonde-server"
_FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")
PRIORITY_NOTICE = 5


def encode_entry(fields: Mapping[str, str]) -> bytes:
    """The datagram for one entry; ValueError for a name the journal would drop."""
    parts: list[bytes] = []
    for name, value in fields.items():
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a journal field name (A-Z, 0-9, _)")
        data = value.encode()
        if b"\n" in data:
            parts.append(name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(name.encode() + b"=" + data + b"\n")
    return b"".join(parts)


class SystemJournal:
    """The journal at `path` (the system's by default)."""

    def __init__(self, path: Path = JOURNAL_SOCKET) -> None:
        self.path = path

    @classmethod
    def from_environment(cls) -> SystemJournal:
        named = os.environ.get(JOURNAL_SOCKET_VARIABLE)
        return cls(Path(named)) if named else cls()

    @property
    def present(self) -> bool:
        return hasattr(socket, "AF_UNIX") and self.path.is_socket()

    def send(self, message: str, fields: Mapping[str, str]) -> bool:
        """Write one entry (MESSAGE, this program's identifier, `fields`); whether it went."""
        if not self.present:
            return False
        entry = encode_entry(
            {
                "MESSAGE": message,
                "SYSLOG_IDENTIFIER": IDENTIFIER,
                "PRIORITY": str(PRIORITY_NOTICE),
                **fields,
            }
        )
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
                journal.sendto(entry, str(self.path))
        except OSError as error:
            log.warning("could not write to the system journal %s: %s", self.path, error)
            return False
        return True
