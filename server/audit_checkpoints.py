"""Checkpoints of the audit chain's head, outside the database: a file and the system journal.

`sonde-server run` writes DIR/audit.checkpoint (owner-only, replaced atomically, MACed with the
audit key: server/domain/audit_checkpoint.py) when it starts, every CHECKPOINT_INTERVAL_S while
the chain grows, and when it stops, and sends each one to the system journal when there is one.
`sonde-server audit verify` then checks the chain still reaches the file's checkpoint (or one
copied from the journal): deleting the newest rows, even with the head moved back, or every
row, shows. Rows written since the last checkpoint are not covered: the interval bounds that.

A checkpoint is never moved back nor past a chain that no longer holds it: that is the
evidence `audit verify` reports, so the server logs it and leaves the file as it is.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sonde.private_files import write_private_file
from sonde.server.domain.audit import AuditLog
from sonde.server.domain.audit_checkpoint import AuditCheckpoint, CheckpointUnreadable
from sonde.server.domain.audit_rows import AuditKey
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.errors import Conflict
from sonde.server.system_journal import SystemJournal

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "audit.checkpoint"
CHECKPOINT_INTERVAL_S = 10.0
_MAX_FILE_BYTES = 4096


class CheckpointProblem(Conflict):
    """The checkpoint file cannot be read or trusted: says which file and what to do."""


def checkpoint_path(data_root: Path) -> Path:
    return data_root / CHECKPOINT_FILE


def read_checkpoint(path: Path, key: AuditKey) -> AuditCheckpoint | None:
    """The checkpoint in `path`, or None when there is none yet."""
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CheckpointProblem(
            f"{path}: cannot read the audit checkpoint ({error.strerror})"
        ) from None
    if len(data) > _MAX_FILE_BYTES:
        raise CheckpointProblem(f"{path}: not an audit checkpoint (over {_MAX_FILE_BYTES} bytes)")
    try:
        return AuditCheckpoint.decode(data, key)
    except CheckpointUnreadable as error:
        raise CheckpointProblem(
            f"{path}: the audit checkpoint cannot be trusted: {error}. Run `sonde-server audit "
            "verify --no-checkpoint` to check the chain alone; move the file away to start "
            "checkpoints again"
        ) from None


def write_checkpoint(path: Path, checkpoint: AuditCheckpoint, key: AuditKey) -> None:
    write_private_file(path, checkpoint.encode(key))


class AuditCheckpoints:
    """Takes checkpoints of one server's audit chain into its data folder and the journal."""

    def __init__(
        self,
        audit: AuditLog,
        path: Path,
        key: AuditKey,
        *,
        journal: SystemJournal | None = None,
        clock: Clock = utc_now,
        interval_s: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        self._audit = audit
        self._path = path
        self._key = key
        self._journal = journal if journal is not None else SystemJournal()
        self._clock = clock
        self._interval_s = interval_s
        self._last = read_checkpoint(path, key)  # CheckpointProblem: refuse to start
        self._diverged_logged = False

    @property
    def last(self) -> AuditCheckpoint | None:
        return self._last

    async def take(self) -> AuditCheckpoint | None:
        """A checkpoint of the head now, when the chain grew and still holds the last one;
        None when there is nothing new or the chain no longer holds the last checkpoint."""
        head = await self._audit.head()
        if head is None:
            self._diverged("the chain's head row (table audit_chain) is missing")
            return None
        last = self._last
        if last is not None:
            if head.rows < last.rows:
                self._diverged(f"the chain has {head.rows} rows, fewer than the checkpoint's")
                return None
            if await self._audit.hash_of(last.rows) != last.head_hash:
                self._diverged(f"row {last.rows} is no longer the row the checkpoint recorded")
                return None
            if head.rows == last.rows:
                return None
        checkpoint = head.checkpoint(self._clock())
        await asyncio.to_thread(write_checkpoint, self._path, checkpoint, self._key)
        self._last = checkpoint
        self._to_journal(checkpoint)
        return checkpoint

    async def run(self) -> None:
        """Until cancelled; a failed round is logged and the next one tries again."""
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.take()
            except Exception:
                log.exception("audit checkpoint failed; trying again in %.0f s", self._interval_s)

    def _to_journal(self, checkpoint: AuditCheckpoint) -> None:
        self._journal.send(
            f"audit checkpoint: {checkpoint.rows} rows, head {checkpoint.head_hash}",
            {
                "SONDE_AUDIT_ROWS": str(checkpoint.rows),
                "SONDE_AUDIT_HEAD": checkpoint.head_hash,
                "SONDE_AUDIT_AT": "" if checkpoint.at is None else checkpoint.at.isoformat(),
                "SONDE_AUDIT_MAC": checkpoint.mac(self._key),
            },
        )

    def _diverged(self, why: str) -> None:
        if self._diverged_logged:
            return
        self._diverged_logged = True
        log.error(
            "the audit log no longer reaches its checkpoint (%s; %s): the newest rows were "
            "deleted or rewritten outside Sonde. The checkpoint is kept as evidence and not "
            "advanced; run `sonde-server audit verify`",
            self._path,
            why,
        )
