"""The durable outbox: order, acknowledgement, bounds, owner-only file, survives SIGKILL."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.journal import Outbox


def test_pending_results_come_back_in_the_order_they_were_put(tmp_path: Path) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        for n in range(5):
            outbox.put(f"cmd-{n}", f"result {n}".encode())
        assert outbox.count() == 5
        assert [p.command_id for p in outbox.pending()] == [f"cmd-{n}" for n in range(5)]
        assert outbox.pending()[2].result == b"result 2"


def test_acknowledge_drops_only_that_result(tmp_path: Path) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        outbox.put("a", b"1")
        outbox.put("b", b"2")
        assert outbox.acknowledge("a") is True
        assert outbox.acknowledge("a") is False  # a second ack is harmless
        assert outbox.acknowledge("never-put") is False
        assert [p.command_id for p in outbox.pending()] == ["b"]
        assert outbox.get("a") is None
        assert outbox.get("b") == b"2"


def test_completed_ids_outlive_the_acknowledgement(tmp_path: Path) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        assert not outbox.is_completed("a")
        outbox.put("a", b"1")
        outbox.acknowledge("a")
        assert outbox.is_completed("a")
    with Outbox.in_state_dir(tmp_path) as reopened:
        assert reopened.is_completed("a")
        assert not reopened.is_completed("b")


def test_putting_the_same_command_again_replaces_its_result(tmp_path: Path) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        outbox.put("a", b"first")
        outbox.put("b", b"other")
        outbox.put("a", b"second")
        assert outbox.count() == 2
        assert outbox.get("a") == b"second"


def test_results_survive_closing_and_reopening(tmp_path: Path) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        outbox.put("a", b"1")
        outbox.put("b", b"2")
        outbox.acknowledge("a")
    with Outbox.in_state_dir(tmp_path) as reopened:
        assert [(p.command_id, p.result) for p in reopened.pending()] == [("b", b"2")]


def test_outbox_file_is_owner_only_even_with_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0o000)
    try:
        with Outbox.in_state_dir(tmp_path) as outbox:
            outbox.put("a", b"1")
            files = sorted(tmp_path.glob("outbox.sqlite3*"))
            assert files, "the outbox file was not created"
            for path in files:
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        os.umask(previous)


def test_oldest_results_are_dropped_past_the_count_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        Outbox(tmp_path / "outbox.sqlite3", max_results=3) as outbox,
        caplog.at_level(logging.WARNING),
    ):
        for n in range(5):
            outbox.put(f"cmd-{n}", b"x")
        assert [p.command_id for p in outbox.pending()] == ["cmd-2", "cmd-3", "cmd-4"]
    dropped = [r.getMessage() for r in caplog.records if "dropped the oldest" in r.getMessage()]
    assert len(dropped) == 2
    assert "command cmd-0" in dropped[0]
    assert "command cmd-1" in dropped[1]


def test_oldest_results_are_dropped_past_the_size_bound(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3", max_bytes=250) as outbox:
        for n in range(4):
            outbox.put(f"cmd-{n}", bytes(100))
        assert [p.command_id for p in outbox.pending()] == ["cmd-2", "cmd-3"]
        # One result bigger than the whole bound is still kept: it is the newest.
        outbox.put("huge", bytes(1000))
        assert [p.command_id for p in outbox.pending()] == ["huge"]


def test_default_bounds_are_200_results_and_64_mib(tmp_path: Path) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        for n in range(205):
            outbox.put(f"cmd-{n:03d}", b"r")
        pending = outbox.pending()
        assert len(pending) == 200
        assert pending[0].command_id == "cmd-005"


_WRITER = """
import sys, time
from pathlib import Path
from agent.journal import Outbox
outbox = Outbox.in_state_dir(Path(sys.argv[1]))
for n in range(3):
    outbox.put(f"cmd-{n}", b"snapshot %d" % n)
outbox.acknowledge("cmd-0")
print("written", flush=True)
time.sleep(60)
"""


def test_results_put_survive_a_sigkilled_writer(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "written"
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=10) == -signal.SIGKILL
    finally:
        writer.kill()
        writer.wait()
    with Outbox.in_state_dir(tmp_path) as reopened:
        assert [(p.command_id, p.result) for p in reopened.pending()] == [
            ("cmd-1", b"snapshot 1"),
            ("cmd-2", b"snapshot 2"),
        ]
        assert reopened.is_completed("cmd-0")
