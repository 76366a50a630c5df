"""Checkpoints of the audit chain's head outside the database: what they catch that the head
row alone cannot (the newest rows deleted with the head moved back, every row deleted, an
unkeyed stretch rechained), and how the server keeps them (a file, the system journal)."""

from __future__ import annotations

import json
import logging
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from sonde.server.audit_checkpoints import (
    AuditCheckpoints,
    CheckpointProblem,
    checkpoint_path,
    read_checkpoint,
)
from sonde.server.audit_key import AuditKeyProblem, audit_key_for_chain, audit_key_path
from sonde.server.domain.audit import AuditCheckpoint, AuditLog
from sonde.server.domain.audit_rows import GENESIS_HASH, AuditKey, chain_hash
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_chain, audit_log
from sonde.server.system_journal import SystemJournal, encode_entry
from tests.unit.domain.builders import Clock

KEY = AuditKey(bytes(range(32)))
OTHER_KEY = AuditKey(bytes(range(1, 33)))


async def _write(log: AuditLog, count: int) -> None:
    for n in range(count):
        await log.record("ann", "ticket.comment", ticket_id=n + 1, detail={"n": n})


async def _checkpoint_now(log: AuditLog) -> AuditCheckpoint:
    head = await log.head()
    assert head is not None
    return head.checkpoint(Clock()())


def _cut_to(rows: int) -> Callable[[Connection], None]:
    """What someone with the database and no key can do: delete the newest rows and move the
    head back to the last one kept, so the head row agrees with the log."""

    def change(session: Connection) -> None:
        session.execute(delete(audit_log).where(audit_log.c.id > rows))
        kept = session.execute(select(audit_log.c.hash).where(audit_log.c.id == rows)).scalar()
        session.execute(update(audit_chain).values(last_id=rows, hash=kept or GENESIS_HASH))

    return change


async def test_deleting_the_newest_rows_with_the_head_is_caught_by_the_checkpoint(
    db: Database,
) -> None:
    log = AuditLog(db, Clock(), key=KEY)
    await _write(log, 5)
    checkpoint = await _checkpoint_now(log)
    await db.write(_cut_to(3))
    alone = await log.verify()
    assert alone.ok, "the head row moved back with the rows: the chain alone cannot tell"
    verification = await log.verify(checkpoint)
    assert (verification.ok, verification.rows, verification.first_bad_id) == (False, 3, 4)
    assert "rows 4-5 missing at the end" in verification.reason
    assert "records 5 rows, the log holds 3" in verification.reason


async def test_deleting_every_row_is_caught_by_the_checkpoint(db: Database) -> None:
    log = AuditLog(db, Clock(), key=KEY)
    await _write(log, 4)
    checkpoint = await _checkpoint_now(log)
    await db.write(_cut_to(0))
    verification = await log.verify(checkpoint)
    assert (verification.ok, verification.rows, verification.first_bad_id) == (False, 0, 1)
    assert "the audit log is empty" in verification.reason
    assert "records 4 rows: every row was deleted" in verification.reason


async def test_rechaining_an_unkeyed_stretch_is_caught_by_the_checkpoint(db: Database) -> None:
    """Rows written before the chain was keyed can be relinked without a key; the checkpoint
    of their head still tells."""
    log = AuditLog(db, Clock())
    await _write(log, 3)
    checkpoint = await _checkpoint_now(log)

    def rechain(session: Connection) -> None:
        prev = GENESIS_HASH
        for row in session.execute(select(audit_log).order_by(audit_log.c.id)).all():
            fields = {**row._mapping, "actor": "mallory" if row.id == 2 else row.actor}
            for name in ("id", "prev_hash", "hash"):
                fields.pop(name)
            link = chain_hash(prev, row_id=row.id, **fields)
            session.execute(
                update(audit_log)
                .where(audit_log.c.id == row.id)
                .values(actor=fields["actor"], prev_hash=prev, hash=link)
            )
            prev = link
        session.execute(update(audit_chain).values(hash=prev))

    await db.write(rechain)
    assert (await log.verify()).ok
    verification = await log.verify(checkpoint)
    assert (verification.ok, verification.first_bad_id) == (False, 3)
    assert "row 3 is not the row the checkpoint taken" in verification.reason


async def test_a_chain_grown_past_its_checkpoint_verifies(db: Database) -> None:
    log = AuditLog(db, Clock(), key=KEY)
    empty = await _checkpoint_now(log)
    await _write(log, 2)
    checkpoint = await _checkpoint_now(log)
    await _write(log, 2)
    for earlier in (empty, checkpoint):
        verification = await log.verify(earlier)
        assert verification.ok, verification.reason
    assert "reaches the checkpoint taken" in (await log.verify(checkpoint)).reason
    given = AuditCheckpoint(rows=checkpoint.rows, head_hash=checkpoint.head_hash, at=None)
    assert "reaches the checkpoint given (2 rows)" in (await log.verify(given)).reason


# -- the server's checkpoints: the file and the journal ---------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[SystemJournal, socket.socket]]:
    """A journal socket of the test's own, read as journald would read it."""
    path = tmp_path / "journal.socket"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(5)
    try:
        yield SystemJournal(path), listener
    finally:
        listener.close()


def _parse_entry(datagram: bytes) -> dict[str, str]:
    """The native journal protocol, read back."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line, newline, after = rest.partition(b"\n")
        if b"=" in line:
            name, _, value = line.partition(b"=")
            fields[name.decode()] = value.decode()
            rest = after
        else:
            (size,) = struct.unpack("<Q", after[:8])
            fields[line.decode()] = after[8 : 8 + size].decode()
            rest = after[8 + size + 1 :]
        assert newline
    return fields


async def test_the_server_writes_checkpoints_to_its_file_and_the_journal(
    db: Database, tmp_path: Path, journal: tuple[SystemJournal, socket.socket]
) -> None:
    system_journal, listener = journal
    log = AuditLog(db, Clock(), key=KEY)
    await _write(log, 3)
    path = checkpoint_path(tmp_path)
    checkpoints = AuditCheckpoints(log, path, KEY, journal=system_journal, clock=Clock())
    taken = await checkpoints.take()
    assert taken is not None
    assert taken.rows == 3
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_checkpoint(path, KEY) == taken
    entry = _parse_entry(listener.recv(65536))
    assert entry["SYSLOG_IDENTIFIER"] == "sonde-server"
    assert (entry["SONDE_AUDIT_ROWS"], entry["SONDE_AUDIT_HEAD"]) == ("3", taken.head_hash)
    assert entry["SONDE_AUDIT_MAC"] == taken.mac(KEY)
    assert entry["MESSAGE"] == f"audit checkpoint: 3 rows, head {taken.head_hash}"

    assert await checkpoints.take() is None, "nothing new: no checkpoint, no journal entry"
    await _write(log, 1)
    grown = await checkpoints.take()
    assert grown is not None
    assert grown.rows == 4
    assert _parse_entry(listener.recv(65536))["SONDE_AUDIT_ROWS"] == "4"
    # A new server on the same folder starts from the file's checkpoint.
    assert AuditCheckpoints(log, path, KEY, journal=system_journal).last == grown


async def test_a_checkpoint_is_never_moved_back_over_deleted_rows(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = AuditLog(db, Clock(), key=KEY)
    await _write(log, 5)
    path = checkpoint_path(tmp_path)
    checkpoints = AuditCheckpoints(log, path, KEY, journal=SystemJournal(tmp_path / "none"))
    await checkpoints.take()
    before = path.read_bytes()
    await db.write(_cut_to(2))
    await _write(log, 6)  # the chain grows past the old count again, from row 3
    with caplog.at_level(logging.ERROR):
        assert await checkpoints.take() is None
        assert await checkpoints.take() is None
    assert path.read_bytes() == before, "the evidence stays as it was"
    errors = [r for r in caplog.records if "no longer reaches its checkpoint" in r.getMessage()]
    assert len(errors) == 1, "said once, not every round"
    assert "row 5 is no longer the row the checkpoint recorded" in errors[0].getMessage()
    verification = await log.verify(read_checkpoint(path, KEY))
    assert (verification.ok, verification.first_bad_id) == (False, 5)


def test_an_edited_or_foreign_checkpoint_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.checkpoint"
    checkpoint = AuditCheckpoint(rows=7, head_hash="ab" * 32, at=Clock()())
    path.write_bytes(checkpoint.encode(KEY))
    assert read_checkpoint(path, KEY) == checkpoint
    with pytest.raises(CheckpointProblem, match="MAC does not verify"):
        read_checkpoint(path, OTHER_KEY)
    edited = json.loads(path.read_bytes())
    edited["rows"] = 3
    path.write_text(json.dumps(edited))
    with pytest.raises(CheckpointProblem, match=f"{path}: the audit checkpoint cannot be trusted"):
        read_checkpoint(path, KEY)
    for junk in (b"", b"{", b"[]", b'{"version": 9}', b"x" * 5000):
        path.write_bytes(junk)
        with pytest.raises(CheckpointProblem):
            read_checkpoint(path, KEY)
    assert read_checkpoint(tmp_path / "absent", KEY) is None


def test_journal_entries_follow_the_native_protocol() -> None:
    entry = encode_entry({"MESSAGE": "two\nlines", "SONDE_AUDIT_ROWS": "3"})
    assert _parse_entry(entry) == {"MESSAGE": "two\nlines", "SONDE_AUDIT_ROWS": "3"}
    with pytest.raises(ValueError, match="not a journal field name"):
        encode_entry({"lower": "x"})
    assert not SystemJournal(Path("/nonexistent/journal.socket")).send("x", {})


# -- the key the server starts with ---------------------------------------------------------


async def test_a_keyed_chain_refuses_a_start_without_its_key(db: Database, tmp_path: Path) -> None:
    log = AuditLog(db, Clock())
    key, made = await audit_key_for_chain(tmp_path, log)
    assert made, "a chain never keyed gets a key"
    await _write(AuditLog(db, Clock(), key=key), 2)
    assert await audit_key_for_chain(tmp_path, log) == (key, False)
    audit_key_path(tmp_path).unlink()
    with pytest.raises(AuditKeyProblem, match="is missing, but the audit chain is keyed with it"):
        await audit_key_for_chain(tmp_path, log)
    assert not audit_key_path(tmp_path).exists(), "no new key was made"
    audit_key_path(tmp_path).write_bytes(OTHER_KEY.secret)
    audit_key_path(tmp_path).chmod(0o600)
    with pytest.raises(AuditKeyProblem, match="is not the key the audit chain is keyed with"):
        await audit_key_for_chain(tmp_path, log)
