"""Run the registry's collectors concurrently, each bounded in time, into one Snapshot.

The runner, not the collector, owns time limits and turns what happened into a
CollectorReport: a collector is a plain blocking function and knows nothing of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message

from sonde.agent.collectors.context import CollectContext
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.registry import Collector, registered_collectors
from sonde.v1 import diagnostics_pb2

__all__ = [
    "CollectContext",
    "ProgressCallback",
    "collect_snapshot",
    "collector_names",
    "run_collectors",
]

# Called as collectors finish: (finished, total, names still running).
ProgressCallback = Callable[[int, int, list[str]], None]

_MAX_REASON_CHARS = 300
State = diagnostics_pb2.CollectorState


def collector_names() -> list[str]:
    """Every collector this platform runs, in registry order."""
    return [entry.name for entry in registered_collectors()]


@dataclass(frozen=True)
class _Outcome:
    state: diagnostics_pb2.CollectorState.ValueType
    reason: str = ""
    facts: Message | None = None


def _select(only: Sequence[str]) -> list[Collector]:
    entries = list(registered_collectors())
    if not only:
        return entries
    known = {entry.name for entry in entries}
    unknown = sorted(set(only) - known)
    if unknown:
        raise ValueError(
            f"unknown collector(s) {', '.join(unknown)}: choose from {', '.join(sorted(known))}"
        )
    wanted = set(only)
    return [entry for entry in entries if entry.name in wanted]


def _one_line(error: BaseException) -> str:
    # A report carries what went wrong in one line, never a stack trace.
    text = " ".join(str(error).split()) or "no message"
    reason = f"{type(error).__name__}: {text}"
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 3] + "..."
    return reason


def _deliver(future: asyncio.Future[_Outcome], outcome: _Outcome) -> None:
    if not future.done():
        future.set_result(outcome)


async def _run_one(entry: Collector, ctx: CollectContext) -> _Outcome:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_Outcome] = loop.create_future()

    def work() -> None:
        try:
            outcome = _Outcome(State.COLLECTOR_STATE_OK, facts=entry.collect(ctx))
        except CollectorUnavailable as unavailable:
            outcome = _Outcome(State.COLLECTOR_STATE_UNAVAILABLE, unavailable.reason)
        except Exception as error:
            outcome = _Outcome(State.COLLECTOR_STATE_FAILED, _one_line(error))
        # RuntimeError: the loop is gone, this collector timed out and nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_deliver, future, outcome)

    # A daemon thread, not the default executor: a hung OS call must not hold the
    # process open at exit (asyncio.run joins the default executor's threads).
    threading.Thread(target=work, name=f"collector-{entry.name}", daemon=True).start()
    timeout = entry.timeout_s if entry.own_limit else min(ctx.collector_timeout_s, entry.timeout_s)
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        return _Outcome(State.COLLECTOR_STATE_TIMED_OUT, f"did not finish within {timeout:g} s")


async def collect_snapshot(
    ctx: CollectContext,
    only: Sequence[str] = (),
    *,
    on_progress: ProgressCallback | None = None,
) -> diagnostics_pb2.Snapshot:
    """Collect one point-in-time Snapshot; agent_id and agent_version are the caller's.

    `only` restricts to the named collectors; an unknown name is a ValueError.
    """
    return await run_collectors(_select(only), ctx, on_progress=on_progress)


async def run_collectors(
    entries: Sequence[Collector],
    ctx: CollectContext,
    *,
    on_progress: ProgressCallback | None = None,
) -> diagnostics_pb2.Snapshot:
    """Run these collectors side by side into one Snapshot, one report per collector."""
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.collected_at.GetCurrentTime()
    started = time.perf_counter()

    async def timed(entry: Collector) -> tuple[Collector, _Outcome, float]:
        begin = time.perf_counter()
        outcome = await _run_one(entry, ctx)
        return entry, outcome, time.perf_counter() - begin

    tasks = [asyncio.ensure_future(timed(entry)) for entry in entries]
    running = {entry.name for entry in entries}
    results: dict[str, tuple[_Outcome, float]] = {}
    for next_done in asyncio.as_completed(tasks):
        entry, outcome, seconds = await next_done
        running.discard(entry.name)
        results[entry.name] = (outcome, seconds)
        if on_progress is not None:
            on_progress(len(results), len(entries), sorted(running))

    for entry in entries:
        outcome, seconds = results[entry.name]
        state, reason = outcome.state, outcome.reason
        if outcome.facts is not None:
            try:
                getattr(snapshot, entry.field).CopyFrom(outcome.facts)
            except TypeError as error:
                state, reason = State.COLLECTOR_STATE_FAILED, _one_line(error)
        snapshot.collectors.add(
            name=entry.name, state=state, reason=reason, duration_ms=round(seconds * 1000)
        )
    snapshot.duration_ms = round((time.perf_counter() - started) * 1000)
    return snapshot
