"""The agent's run record (agent/remediation/orders.py) with a real outbox in a real state
folder: a run started and not finished is reported interrupted once and never again; one whose
result was kept just before a crash is not; expired records go; the dispatch key is pinned
as the catalog key is."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.agent.dispatch_key import DISPATCH_KEY, DispatchKeyRefused
from sonde.agent.journal import Outbox
from sonde.agent.run_record import INTERRUPTED, RunRecord, recover_interrupted
from sonde.v1 import agent_pb2


def later(hours: float = 1) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


def test_a_started_run_is_reported_interrupted_once_and_remembered(tmp_path: Path) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        record = RunRecord.in_state_dir(tmp_path)
        record.started("cmd-1", later())
        (report,) = recover_interrupted(tmp_path, outbox)
        assert report.command_id == "cmd-1"
        assert report.failure.kind == agent_pb2.FAILURE_KIND_FAILED
        assert report.failure.reason == INTERRUPTED
        kept = outbox.get("cmd-1")
        assert kept is not None
        assert agent_pb2.Result.FromString(kept) == report
        assert recover_interrupted(tmp_path, outbox) == []  # marked finished: not twice
        assert record.knows("cmd-1")  # still refused as a replay until it expires


def test_a_run_whose_result_was_kept_before_the_crash_is_not_reported_interrupted(
    tmp_path: Path,
) -> None:
    with Outbox.in_state_dir(tmp_path) as outbox:
        RunRecord.in_state_dir(tmp_path).started("cmd-2", later())
        ran = agent_pb2.Result(command_id="cmd-2", script_run=agent_pb2.ScriptRun(exit_code=0))
        outbox.put("cmd-2", ran.SerializeToString())  # the crash came before finished()
        assert recover_interrupted(tmp_path, outbox) == []
        assert outbox.get("cmd-2") == ran.SerializeToString()


def test_expired_finished_records_are_dropped_and_unreadable_ones_kept(tmp_path: Path) -> None:
    record = RunRecord.in_state_dir(tmp_path)
    record.finished("old", datetime.now(UTC) - timedelta(seconds=1))
    record.finished("young", later())
    damaged = record.folder / ("00" * 8 + ".run")
    damaged.write_bytes(b"{not json")
    assert record.unfinished(datetime.now(UTC)) == []
    assert not record.knows("old")
    assert record.knows("young")
    assert damaged.exists()
    assert stat.S_IMODE(record.folder.stat().st_mode) == 0o700


def raw_key() -> bytes:
    return (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def test_the_dispatch_key_is_pinned_owner_only_and_another_refused_unless_replaced(
    tmp_path: Path,
) -> None:
    first, second = raw_key(), raw_key()
    DISPATCH_KEY.pin(tmp_path, first, replace=False)
    assert stat.S_IMODE((tmp_path / "dispatch.pub").stat().st_mode) == 0o600
    with pytest.raises(DispatchKeyRefused, match=r"pins dispatch key .* sent another"):
        DISPATCH_KEY.pin(tmp_path, second, replace=False)
    with pytest.raises(DispatchKeyRefused, match="sent none"):
        DISPATCH_KEY.check(tmp_path, b"", replace=False)
    DISPATCH_KEY.pin(tmp_path, second, replace=True)
    pinned = DISPATCH_KEY.pinned(tmp_path)
    assert pinned is not None
    assert pinned.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == second
