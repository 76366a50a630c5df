"""The runner: limits in time, one report per collector, reasons without tracebacks."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.registry import Collector, windows_only_collectors
from sonde.agent.collectors.runner import (
    CollectContext,
    collect_snapshot,
    collector_names,
    run_collectors,
)
from sonde.agent.collectors.windows.document import WINDOWS_ONLY_FIELDS
from sonde.v1 import diagnostics_pb2

State = diagnostics_pb2.CollectorState
released = threading.Event()


def _memory(ctx: CollectContext) -> diagnostics_pb2.MemoryFacts:
    return diagnostics_pb2.MemoryFacts(total_bytes=42)


def _hangs(ctx: CollectContext) -> diagnostics_pb2.CpuFacts:
    released.wait(30)  # an OS call that never answers
    return diagnostics_pb2.CpuFacts()


def _raises(ctx: CollectContext) -> diagnostics_pb2.DiskFacts:
    raise OSError("[Errno 5] Input/output error\n  on /dev/sda")


def _unavailable(ctx: CollectContext) -> diagnostics_pb2.BatteryFacts:
    raise CollectorUnavailable("no battery driver")


def _wrong_type(ctx: CollectContext) -> diagnostics_pb2.CpuFacts:
    return diagnostics_pb2.CpuFacts()


async def test_a_hung_collector_times_out_while_the_others_complete() -> None:
    entries = [
        Collector("memory", "memory", _memory, 1.0),
        Collector("cpu", "cpu", _hangs, 0.3),
        Collector("disks", "disks", _raises, 1.0),
        Collector("battery", "battery", _unavailable, 1.0),
    ]
    # The hung collector is released only after run_collectors returns: that it returns at all
    # shows the others did not wait for it (the generous deadline only bounds a broken run).
    try:
        snapshot = await asyncio.wait_for(run_collectors(entries, CollectContext()), 60)
    finally:
        released.set()
    reports = {c.name: c for c in snapshot.collectors}
    assert [c.name for c in snapshot.collectors] == ["memory", "cpu", "disks", "battery"]
    assert reports["memory"].state == State.COLLECTOR_STATE_OK
    assert snapshot.memory.total_bytes == 42
    assert reports["cpu"].state == State.COLLECTOR_STATE_TIMED_OUT
    assert reports["cpu"].reason == "did not finish within 0.3 s"
    assert not snapshot.HasField("cpu")
    assert reports["disks"].state == State.COLLECTOR_STATE_FAILED
    assert reports["disks"].reason == "OSError: [Errno 5] Input/output error on /dev/sda"
    assert reports["battery"].state == State.COLLECTOR_STATE_UNAVAILABLE
    assert reports["battery"].reason == "no battery driver"
    assert snapshot.duration_ms >= 300
    assert snapshot.collected_at.seconds > 0


async def test_the_context_limit_applies_when_shorter() -> None:
    gate = threading.Event()

    def slow(ctx: CollectContext) -> diagnostics_pb2.CpuFacts:
        gate.wait(30)
        return diagnostics_pb2.CpuFacts()

    try:
        snapshot = await run_collectors(
            [Collector("cpu", "cpu", slow, 10.0)], CollectContext(collector_timeout_s=0.2)
        )
    finally:
        gate.set()
    assert snapshot.collectors[0].reason == "did not finish within 0.2 s"


async def test_a_collector_with_its_own_limit_is_not_shortened_by_the_context() -> None:
    def slow(ctx: CollectContext) -> diagnostics_pb2.PrintFacts:
        threading.Event().wait(0.4)  # longer than the context allows, shorter than its own
        return diagnostics_pb2.PrintFacts(spooler_state="running")

    ctx = CollectContext(collector_timeout_s=0.1)
    own = await run_collectors([Collector("printing", "printing", slow, 2.0, own_limit=True)], ctx)
    assert own.collectors[0].state == State.COLLECTOR_STATE_OK
    assert own.printing.spooler_state == "running"
    bounded = await run_collectors([Collector("printing", "printing", slow, 2.0)], ctx)
    assert bounded.collectors[0].reason == "did not finish within 0.1 s"
    late = await run_collectors([Collector("printing", "printing", slow, 0.2, own_limit=True)], ctx)
    assert late.collectors[0].reason == "did not finish within 0.2 s"


async def test_a_collector_returning_the_wrong_message_is_failed() -> None:
    snapshot = await run_collectors(
        [Collector("memory", "memory", _wrong_type, 1.0)], CollectContext()
    )
    assert snapshot.collectors[0].state == State.COLLECTOR_STATE_FAILED
    assert not snapshot.HasField("memory")


async def test_only_restricts_and_unknown_names_are_refused() -> None:
    snapshot = await collect_snapshot(CollectContext(), only=["memory", "system"])
    assert [c.name for c in snapshot.collectors] == ["system", "memory"]
    assert snapshot.HasField("memory")
    assert not snapshot.HasField("cpu")
    with pytest.raises(ValueError, match=r"unknown collector.*bogus: choose from"):
        await collect_snapshot(CollectContext(), only=["memory", "bogus"])


async def test_progress_is_reported_as_collectors_finish() -> None:
    seen: list[tuple[int, int, list[str]]] = []
    await collect_snapshot(
        CollectContext(), only=["memory", "cpu"], on_progress=lambda *a: seen.append(a)
    )
    assert [(done, total) for done, total, _ in seen] == [(1, 2), (2, 2)]
    assert seen[-1][2] == []


def test_the_windows_only_collectors_fill_their_own_fields_with_their_own_limit() -> None:
    entries = windows_only_collectors()  # registered on Windows only
    assert [e.name for e in entries] == list(WINDOWS_ONLY_FIELDS)
    assert not set(WINDOWS_ONLY_FIELDS) & set(collector_names())
    for entry in entries:
        assert entry.field == entry.name
        assert entry.field in diagnostics_pb2.Snapshot.DESCRIPTOR.fields_by_name
        assert entry.own_limit


def test_registry_names_are_unique_and_complete() -> None:
    names = collector_names()
    assert len(names) == len(set(names))
    assert names == [
        "system", "cpu", "memory", "disks", "battery",
        "network", "processes", "services", "software", "updates",
    ]  # fmt: skip
