"""The durable outbox: results kept until the server acknowledges them, and the set of
command ids already executed, so a command resent after a restart is not run twice.

Plain files in state_dir/outbox/ (folder 0700, files 0600), not SQLite: the library alone
costs the long-running agent more than 1 MiB of RSS for at most 200 small records.

    outbox/00000000000000000007.result   one per pending result, written atomically
    outbox/completed                     executed command ids, one a line, append-only

A result file is complete before it has its name (temporary file, fsync, rename, fsync of
the folder), so a crash leaves either the whole file or a temporary one, which is ignored
and removed on the next start. Acknowledging a result removes its file.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from sonde.agent.paths import OUTBOX_DIR
from sonde.agent.state import fsync_dir, write_private_file

log = logging.getLogger(__name__)

MAX_RESULTS = 200
MAX_BYTES = 64 * 1024 * 1024
# Executed ids are tiny; this many covers weeks of diagnostics without growing forever.
MAX_COMPLETED_IDS = 10_000
# The completed file is rewritten once it holds this many more ids than it must keep,
# so compaction happens once per thousand commands, not on every one.
COMPACT_SLACK = 1_000

COMPLETED_FILE = "completed"
RESULT_SUFFIX = ".result"
_RESULT_NAME = re.compile(r"^(\d{20})\.result$")
# Printable ASCII without spaces: an id is one line of the completed file (the server's
# are uuid4 hex strings).
COMMAND_ID_PATTERN = re.compile(r"^[!-~]{1,200}$")
# The first line of a result file: format version, id length, result length.
_MAGIC = b"sonde-outbox-1"


class PendingResult(NamedTuple):
    command_id: str
    result: bytes


class _Entry(NamedTuple):
    seq: int
    size: int


def is_command_id(value: str) -> bool:
    return COMMAND_ID_PATTERN.fullmatch(value) is not None


def _encode(command_id: str, result: bytes) -> bytes:
    ident = command_id.encode("ascii")
    return b"%s %d %d\n%s%s" % (_MAGIC, len(ident), len(result), ident, result)


def _decode(data: bytes) -> PendingResult:
    """Parse a result file; ValueError when it is not one, or not whole."""
    header, newline, body = data.partition(b"\n")
    fields = header.split(b" ")
    if not newline or len(fields) != 3 or fields[0] != _MAGIC:
        raise ValueError("not a Sonde outbox result file")
    if not (fields[1].isdigit() and fields[2].isdigit()):
        raise ValueError("its header does not give the two lengths")
    id_length, result_length = int(fields[1]), int(fields[2])
    if len(body) != id_length + result_length:
        raise ValueError(
            f"{len(body)} bytes after the header, {id_length + result_length} expected"
        )
    return PendingResult(body[:id_length].decode("ascii"), body[id_length:])


class Outbox:
    """Results not yet acknowledged, oldest first, in a folder of their own.

    Every write is on disk (fsync of the file and of the folder) before the call returns,
    so a result put before it is sent survives a crash of the agent or of the machine.
    Not safe for two processes at once: only `sonde-agent run` opens it.
    """

    def __init__(
        self,
        folder: Path,
        *,
        max_results: int = MAX_RESULTS,
        max_bytes: int = MAX_BYTES,
        max_completed: int = MAX_COMPLETED_IDS,
        compact_slack: int = COMPACT_SLACK,
    ) -> None:
        self.folder = folder
        self._max_results = max_results
        self._max_bytes = max_bytes
        self._max_completed = max_completed
        self._compact_slack = compact_slack
        folder.mkdir(mode=0o700, exist_ok=True)
        if sys.platform != "win32":
            os.chmod(folder, 0o700)
        self._completed_path = folder / COMPLETED_FILE
        # command id -> (sequence number, result size), oldest first.
        self._pending: dict[str, _Entry] = {}
        self._next_seq = 1
        self._load_pending()
        self._completed_count = self._repair_completed()

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> Outbox:
        return cls(state_dir / OUTBOX_DIR)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing stays open between calls; kept so callers need not know that."""

    def put(self, command_id: str, result: bytes) -> None:
        """Keep a result durably (replacing an earlier one for the same command)."""
        if not is_command_id(command_id):
            raise ValueError(
                f"refusing to keep a result for command id {command_id[:64]!r}: an id is "
                "1 to 200 printable ASCII characters without spaces"
            )
        seq = self._next_seq
        self._next_seq += 1
        write_private_file(self._result_path(seq), _encode(command_id, result))
        earlier = self._pending.pop(command_id, None)
        self._pending[command_id] = _Entry(seq, len(result))
        if earlier is not None:
            self._result_path(earlier.seq).unlink(missing_ok=True)
        self._record_completed(command_id)
        self._enforce_bounds(keep=command_id)

    def get(self, command_id: str) -> bytes | None:
        found = self._read(command_id)
        return None if found is None else found.result

    def pending(self) -> list[PendingResult]:
        """Every unacknowledged result, oldest first."""
        found = [self._read(command_id) for command_id in list(self._pending)]
        return [pending for pending in found if pending is not None]

    def acknowledge(self, command_id: str) -> bool:
        """The server stored it: drop it. False when it was not (or no longer) pending."""
        entry = self._pending.pop(command_id, None)
        if entry is None:
            return False
        self._record_completed(command_id)
        self._result_path(entry.seq).unlink(missing_ok=True)
        fsync_dir(self.folder)
        return True

    def count(self) -> int:
        return len(self._pending)

    def is_completed(self, command_id: str) -> bool:
        """Was this command already executed here (whether or not its result was acked)?"""
        if command_id in self._pending:
            return True
        if not is_command_id(command_id):
            return False
        # Read on demand rather than held in memory: the idle agent stays small.
        return self._completed_contains(command_id.encode("ascii"))

    def _result_path(self, seq: int) -> Path:
        return self.folder / f"{seq:020d}{RESULT_SUFFIX}"

    def _read(self, command_id: str) -> PendingResult | None:
        """A pending result from its file; a file gone or damaged since is dropped, logged."""
        entry = self._pending.get(command_id)
        if entry is None:
            return None
        path = self._result_path(entry.seq)
        try:
            return _decode(path.read_bytes())
        except (OSError, ValueError, UnicodeDecodeError) as error:
            log.warning(
                "outbox: dropping the result of command %s: %s: %s", command_id, path, error
            )
            del self._pending[command_id]
            return None

    def _load_pending(self) -> None:
        found: list[tuple[int, PendingResult]] = []
        for entry in os.scandir(self.folder):
            match = _RESULT_NAME.fullmatch(entry.name)
            if match is None:
                if entry.name.startswith(".") and ".tmp-" in entry.name:
                    # A write cut short by a crash: never renamed, so never acknowledged.
                    os.unlink(entry.path)
                continue
            seq = int(match.group(1))
            self._next_seq = max(self._next_seq, seq + 1)
            try:
                found.append((seq, _decode(Path(entry.path).read_bytes())))
            except (OSError, ValueError, UnicodeDecodeError) as error:
                log.warning("outbox: ignoring %s, which cannot be read: %s", entry.path, error)
        for seq, pending in sorted(found):
            earlier = self._pending.pop(pending.command_id, None)
            if earlier is not None:
                # A crash between writing a replacement and removing the one it replaced.
                self._result_path(earlier.seq).unlink(missing_ok=True)
            self._pending[pending.command_id] = _Entry(seq, len(pending.result))

    def _repair_completed(self) -> int:
        """Drop a last line cut short by a crash; the number of ids the file holds."""
        try:
            data = self._completed_path.read_bytes()
        except FileNotFoundError:
            return 0
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) != len(data):
            os.truncate(self._completed_path, len(whole))
        return whole.count(b"\n")

    def _completed_contains(self, ident: bytes) -> bool:
        try:
            data = self._completed_path.read_bytes()
        except FileNotFoundError:
            return False
        return data.startswith(ident + b"\n") or b"\n" + ident + b"\n" in data

    def _record_completed(self, command_id: str) -> None:
        ident = command_id.encode("ascii")
        if self._completed_contains(ident):
            return
        if self._completed_count >= self._max_completed + self._compact_slack:
            self._compact_completed()
        fd = os.open(
            self._completed_path,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0),
            0o600,
        )
        try:
            os.write(fd, ident + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        self._completed_count += 1

    def _compact_completed(self) -> None:
        """Keep the newest ids only, rewritten atomically (a crash keeps the old file)."""
        lines = self._completed_path.read_bytes().splitlines(keepends=True)
        keep = lines[-self._max_completed :] if self._max_completed > 0 else []
        write_private_file(self._completed_path, b"".join(keep))
        self._completed_count = len(keep)

    def _enforce_bounds(self, keep: str) -> None:
        total = sum(entry.size for entry in self._pending.values())
        dropped = False
        while len(self._pending) > self._max_results or total > self._max_bytes:
            oldest = next((cid for cid in self._pending if cid != keep), None)
            if oldest is None:
                break
            entry = self._pending.pop(oldest)
            self._result_path(entry.seq).unlink(missing_ok=True)
            total -= entry.size
            dropped = True
            log.warning(
                "outbox full (more than %d results or %d MiB): dropped the oldest unacknowledged "
                "result, command %s (%d bytes)",
                self._max_results,
                self._max_bytes // (1024 * 1024),
                oldest,
                entry.size,
            )
        if dropped:
            fsync_dir(self.folder)
