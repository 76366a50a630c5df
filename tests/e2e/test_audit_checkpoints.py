"""A real server checkpoints its audit chain outside the database (its data folder and the
system journal); `sonde-server audit verify` then catches what the head row alone cannot."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deployment import Deployment, run


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[socket.socket]:
    """A journal socket of the test's own (journald's native protocol: one datagram an entry)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "journal.socket"))
    listener.settimeout(10)
    try:
        yield listener
    finally:
        listener.close()


def _entries(listener: socket.socket) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    listener.settimeout(0.2)
    while True:
        try:
            datagram = listener.recv(65536)
        except TimeoutError:
            return found
        fields = dict(line.split("=", 1) for line in datagram.decode().splitlines() if "=" in line)
        found.append(fields)


def _verify(sonde: Deployment, *extra: str) -> tuple[int, dict[str, object], str]:
    done = run("sonde-server", "audit", "verify", "--data", str(sonde.data), *extra, "--json")
    return done.returncode, json.loads(done.stdout), done.stderr


def _restart_with_journal(
    sonde: Deployment, journal: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sonde.server is not None
    sonde.server.stop()
    monkeypatch.setenv("SONDE_JOURNAL_SOCKET", journal.getsockname())
    sonde.start_server()


def test_deleting_the_newest_rows_and_moving_the_head_back_is_caught(
    sonde: Deployment, journal: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    _restart_with_journal(sonde, journal, monkeypatch)
    for name in ("ann", "bob", "cy"):
        sonde.add_user(name, "l1")
    assert sonde.server is not None
    assert sonde.server.stop() == 0  # the last checkpoint is taken on the way out
    checkpoint_file = sonde.data / "audit.checkpoint"
    assert checkpoint_file.stat().st_mode & 0o777 == 0o600
    written = json.loads(checkpoint_file.read_text())
    with sqlite3.connect(sonde.data / "sonde.db") as db:
        rows = db.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    assert written["rows"] == rows >= 4  # init's admin, then three users
    entries = [e for e in _entries(journal) if "SONDE_AUDIT_ROWS" in e]
    assert entries, "each checkpoint goes to the journal too"
    newest = entries[-1]
    assert (newest["SONDE_AUDIT_ROWS"], newest["SONDE_AUDIT_HEAD"]) == (
        str(rows),
        written["head_hash"],
    )
    assert newest["SYSLOG_IDENTIFIER"] == "sonde-server"

    code, report, _ = _verify(sonde)
    assert code == 0, report
    assert f"reaches the checkpoint taken {written['at']}" in str(report["reason"])

    # Someone with the database and no key: the three newest rows go, the head moves back.
    with sqlite3.connect(sonde.data / "sonde.db") as db:
        db.execute("DELETE FROM audit_log WHERE id > ?", (rows - 3,))
        (kept,) = db.execute("SELECT hash FROM audit_log WHERE id = ?", (rows - 3,)).fetchone()
        db.execute("UPDATE audit_chain SET last_id = ?, hash = ?", (rows - 3, kept))
    alone = _verify(sonde, "--no-checkpoint")
    assert alone[0] == 0, "the head agrees with the rows: only the checkpoint can tell"
    code, report, _ = _verify(sonde)
    assert code == 1
    assert report["first_bad_id"] == rows - 2
    assert f"rows {rows - 2}-{rows} missing at the end" in str(report["reason"])
    # The same from the journal's entry, should the data folder be lost too.
    expect = f"{newest['SONDE_AUDIT_ROWS']}:{newest['SONDE_AUDIT_HEAD']}"
    code, report, _ = _verify(sonde, "--expect", expect)
    assert code == 1
    assert "the checkpoint given records" in str(report["reason"])

    # The server starts again, keeps the evidence and says so; the file is not moved back.
    sonde.start_server()
    sonde.add_user("dee", "l1")
    sonde.stop()
    assert json.loads(checkpoint_file.read_text()) == written
    assert "no longer reaches its checkpoint" in sonde.root.joinpath("server.log").read_text()


def test_emptying_the_audit_log_is_caught(sonde: Deployment) -> None:
    sonde.add_user("ann", "l1")
    sonde.stop()
    with sqlite3.connect(sonde.data / "sonde.db") as db:
        db.execute("DELETE FROM audit_log")
        db.execute("UPDATE audit_chain SET last_id = 0, hash = ?", ("0" * 64,))
    code, report, _ = _verify(sonde)
    assert code == 1
    assert "the audit log is empty" in str(report["reason"])
    assert "every row was deleted" in str(report["reason"])


def test_a_lost_audit_key_stops_the_server_from_starting(sonde: Deployment) -> None:
    sonde.add_user("ann", "l1")
    sonde.stop()
    key_file = sonde.data / "pki" / "audit.key"
    key_file.unlink()
    done = run("sonde-server", "run", "--data", str(sonde.data), timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"{key_file} is missing, but the audit chain is keyed with it" in done.stderr
    assert not key_file.exists(), "no new key that could not verify the old rows"


def test_an_edited_checkpoint_file_is_refused_by_verify(sonde: Deployment) -> None:
    sonde.stop()
    checkpoint_file = sonde.data / "audit.checkpoint"
    edited = json.loads(checkpoint_file.read_text())
    edited["rows"] += 1  # one more row than it recorded, to cover a deletion
    checkpoint_file.write_text(json.dumps(edited))
    done = run("sonde-server", "audit", "verify", "--data", str(sonde.data))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "the audit checkpoint cannot be trusted: its MAC does not verify" in done.stderr
