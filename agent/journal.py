"""The durable outbox: results kept until the server acknowledges them, and the set of
command ids already executed, so a command resent after a restart is not run twice."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from agent.paths import OUTBOX_FILE

log = logging.getLogger(__name__)

MAX_RESULTS = 200
MAX_BYTES = 64 * 1024 * 1024
# Executed ids are tiny; this many covers weeks of diagnostics without growing forever.
MAX_COMPLETED_IDS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id TEXT NOT NULL UNIQUE,
    result BLOB NOT NULL,
    size INTEGER NOT NULL,
    stored_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS completed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id TEXT NOT NULL UNIQUE,
    completed_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class PendingResult:
    command_id: str
    result: bytes


class Outbox:
    """Results not yet acknowledged, oldest first, in state_dir/outbox.sqlite3.

    Every write is committed with synchronous=FULL before the call returns, so a result
    put before it is sent survives a crash of the agent or of the machine.
    """

    def __init__(
        self, path: Path, *, max_results: int = MAX_RESULTS, max_bytes: int = MAX_BYTES
    ) -> None:
        self.path = path
        self._max_results = max_results
        self._max_bytes = max_bytes
        # Create the file owner-only before SQLite does (its -wal/-shm copy this mode).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> Outbox:
        return cls(state_dir / OUTBOX_FILE)

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
        self._db.close()

    def put(self, command_id: str, result: bytes) -> None:
        """Keep a result durably (replacing an earlier one for the same command)."""
        now = time.time()
        with self._transaction():
            self._db.execute("DELETE FROM outbox WHERE command_id = ?", (command_id,))
            self._db.execute(
                "INSERT INTO outbox (command_id, result, size, stored_at) VALUES (?, ?, ?, ?)",
                (command_id, result, len(result), now),
            )
            self._db.execute(
                "INSERT OR IGNORE INTO completed (command_id, completed_at) VALUES (?, ?)",
                (command_id, now),
            )
            self._enforce_bounds(keep=command_id)

    def get(self, command_id: str) -> bytes | None:
        row = self._db.execute(
            "SELECT result FROM outbox WHERE command_id = ?", (command_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def pending(self) -> list[PendingResult]:
        """Every unacknowledged result, oldest first."""
        rows = self._db.execute("SELECT command_id, result FROM outbox ORDER BY seq").fetchall()
        return [PendingResult(str(cid), bytes(result)) for cid, result in rows]

    def acknowledge(self, command_id: str) -> bool:
        """The server stored it: drop it. False when it was not (or no longer) pending."""
        with self._transaction():
            cursor = self._db.execute("DELETE FROM outbox WHERE command_id = ?", (command_id,))
        return cursor.rowcount > 0

    def count(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(row[0])

    def is_completed(self, command_id: str) -> bool:
        """Was this command already executed here (whether or not its result was acked)?"""
        row = self._db.execute(
            "SELECT 1 FROM completed WHERE command_id = ?", (command_id,)
        ).fetchone()
        return row is not None

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _enforce_bounds(self, keep: str) -> None:
        count, total = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox"
        ).fetchone()
        while count > self._max_results or total > self._max_bytes:
            oldest = self._db.execute(
                "SELECT seq, command_id, size FROM outbox WHERE command_id != ? "
                "ORDER BY seq LIMIT 1",
                (keep,),
            ).fetchone()
            if oldest is None:
                break
            seq, command_id, size = oldest
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            count, total = count - 1, total - size
            log.warning(
                "outbox full (more than %d results or %d MiB): dropped the oldest unacknowledged "
                "result, command %s (%d bytes)",
                self._max_results,
                self._max_bytes // (1024 * 1024),
                command_id,
                size,
            )
        self._db.execute(
            "DELETE FROM completed WHERE seq <= (SELECT MAX(seq) FROM completed) - ?",
            (MAX_COMPLETED_IDS,),
        )


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raised."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
