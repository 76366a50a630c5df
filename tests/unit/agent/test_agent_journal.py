"""The durable outbox: order, acknowledgement, bounds, owner-only files, survives SIGKILL
and a write cut short."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sonde.agent.journal import Outbox


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


def test_outbox_files_are_owner_only_even_with_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0o000)
    try:
        with Outbox.in_state_dir(tmp_path) as outbox:
            outbox.put("a", b"1")
            outbox.put("b", b"2")
            outbox.acknowledge("a")
            folder = tmp_path / "outbox"
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            files = sorted(folder.iterdir())
            assert [p.name for p in files] == ["00000000000000000002.result", "completed"]
            for path in files:
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        os.umask(previous)


def test_an_existing_outbox_folder_is_tightened_to_0700(tmp_path: Path) -> None:
    (tmp_path / "outbox").mkdir(mode=0o755)
    os.chmod(tmp_path / "outbox", 0o755)
    with Outbox.in_state_dir(tmp_path):
        assert stat.S_IMODE((tmp_path / "outbox").stat().st_mode) == 0o700


def test_oldest_results_are_dropped_past_the_count_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        Outbox(tmp_path / "outbox", max_results=3) as outbox,
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
    with Outbox(tmp_path / "outbox", max_bytes=250) as outbox:
        for n in range(4):
            outbox.put(f"cmd-{n}", bytes(100))
        assert [p.command_id for p in outbox.pending()] == ["cmd-2", "cmd-3"]
        # One result bigger than the whole bound is still kept: it is the newest.
        outbox.put("huge", bytes(1000))
        assert [p.command_id for p in outbox.pending()] == ["huge"]
    # Dropped results leave no file behind.
    assert [p.name for p in (tmp_path / "outbox").glob("*.result")] == [
        "00000000000000000005.result"
    ]


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
from sonde.agent.journal import Outbox
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


def test_a_result_replaced_before_a_crash_comes_back_once_with_the_newer_bytes(
    tmp_path: Path,
) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        outbox.put("a", b"first")
        outbox.put("b", b"other")
    folder = tmp_path / "outbox"
    first = folder / "00000000000000000001.result"
    kept = first.read_bytes()
    with Outbox.in_state_dir(tmp_path) as outbox:
        outbox.put("a", b"second")
    # As if the agent died after writing the replacement but before removing the original.
    first.write_bytes(kept)
    with Outbox.in_state_dir(tmp_path) as reopened:
        assert [(p.command_id, p.result) for p in reopened.pending()] == [
            ("b", b"other"),
            ("a", b"second"),
        ]
    assert not first.exists()


def test_a_torn_write_is_ignored_and_never_half_read(tmp_path: Path) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        outbox.put("a", b"whole result")
    folder = tmp_path / "outbox"
    # What a SIGKILL during put leaves: the temporary file, cut short, never renamed.
    whole = (folder / "00000000000000000001.result").read_bytes()
    torn = folder / ".00000000000000000002.result.tmp-4242"
    torn.write_bytes(whole.replace(b"1 a", b"1 b")[:-5])
    # And a last completed id cut short mid-line.
    with (folder / "completed").open("ab") as completed:
        completed.write(b"half-writ")
    with Outbox.in_state_dir(tmp_path) as reopened:
        assert [(p.command_id, p.result) for p in reopened.pending()] == [("a", b"whole result")]
        assert not torn.exists()
        assert not reopened.is_completed("half-writ")
        assert reopened.is_completed("a")
        reopened.put("c", b"after the crash")
        reopened.acknowledge("c")
    assert (folder / "completed").read_bytes() == b"a\nc\n"
    with Outbox.in_state_dir(tmp_path) as again:
        assert again.is_completed("c")


def test_a_result_file_that_cannot_be_read_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        outbox.put("a", b"fine")
        outbox.put("b", b"about to be damaged")
    damaged = tmp_path / "outbox" / "00000000000000000002.result"
    damaged.write_bytes(damaged.read_bytes()[:-3])
    with caplog.at_level(logging.WARNING), Outbox.in_state_dir(tmp_path) as reopened:
        assert [p.command_id for p in reopened.pending()] == ["a"]
        # A new result never takes the damaged one's name.
        reopened.put("c", b"new")
        assert reopened.get("c") == b"new"
    assert any(
        "00000000000000000002.result, which cannot be read" in r.getMessage()
        for r in caplog.records
    )


def test_results_put_after_a_restart_sort_after_those_kept(tmp_path: Path) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        for name in ("a", "b", "c"):
            outbox.put(name, name.encode())
        outbox.acknowledge("a")
    with Outbox.in_state_dir(tmp_path) as reopened:
        reopened.put("d", b"d")
        assert [p.command_id for p in reopened.pending()] == ["b", "c", "d"]
    assert sorted(p.name for p in (tmp_path / "outbox").glob("*.result")) == [
        "00000000000000000002.result",
        "00000000000000000003.result",
        "00000000000000000004.result",
    ]


def test_completed_ids_keep_at_least_the_newest_cap_and_the_file_stays_bounded(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "outbox"
    with Outbox(folder, max_completed=5, compact_slack=2) as outbox:
        for n in range(20):
            outbox.put(f"cmd-{n:02d}", b"r")
            outbox.acknowledge(f"cmd-{n:02d}")
            lines = (folder / "completed").read_bytes().splitlines()
            assert len(lines) <= 7
            assert lines[-5:] == [f"cmd-{k:02d}".encode() for k in range(max(0, n - 4), n + 1)]
        assert not outbox.is_completed("cmd-00")
    with Outbox(folder, max_completed=5, compact_slack=2) as reopened:
        assert all(reopened.is_completed(f"cmd-{n:02d}") for n in range(15, 20))


def test_a_command_id_that_cannot_be_one_line_is_refused(tmp_path: Path) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        for bad in ("", "two words", "line\nbreak", "é", "x" * 201):
            with pytest.raises(ValueError, match="refusing to keep a result for command id"):
                outbox.put(bad, b"r")
            assert not outbox.is_completed(bad)
        assert outbox.count() == 0


_BUSY_WRITER = """
import sys
from pathlib import Path
from sonde.agent.journal import Outbox
outbox = Outbox.in_state_dir(Path(sys.argv[1]))
n = 0
while True:
    # Big enough that a kill usually lands inside a write.
    outbox.put(f"cmd-{n}", bytes([n % 251]) * (512 * 1024))
    print(n, flush=True)
    n += 1
"""


def test_a_writer_killed_mid_write_leaves_only_whole_results(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", _BUSY_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        for _ in range(5):
            assert writer.stdout.readline().strip().isdigit()
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=10) == -signal.SIGKILL
    finally:
        writer.kill()
        writer.wait()
    with Outbox.in_state_dir(tmp_path) as reopened:
        pending = reopened.pending()
        assert len(pending) >= 5
        for result in pending:
            n = int(result.command_id.removeprefix("cmd-"))
            assert result.result == bytes([n % 251]) * (512 * 1024), result.command_id
    assert not list((tmp_path / "outbox").glob(".*"))


def test_a_result_file_removed_behind_its_back_is_dropped_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        outbox.put("a", b"1")
        outbox.put("b", b"2")
        (tmp_path / "outbox" / "00000000000000000001.result").unlink()
        with caplog.at_level(logging.WARNING):
            assert [p.command_id for p in outbox.pending()] == ["b"]
            assert outbox.get("a") is None
            assert outbox.count() == 1
    assert any("dropping the result of command a" in r.getMessage() for r in caplog.records)
