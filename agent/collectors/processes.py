"""Processes: how many, and the top N by CPU (over a short window) and by memory."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from sonde.agent.collectors.context import CollectContext
from sonde.agent.collectors.sampling import SAMPLE_WINDOW_S
from sonde.v1 import diagnostics_pb2

_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


@dataclass
class _Sample:
    process: psutil.Process
    name: str = ""
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    status: str = ""


def _start_window() -> list[psutil.Process]:
    started = []
    for pid in psutil.pids():
        try:
            process = psutil.Process(pid)
            process.cpu_percent(None)  # the first call only records the starting point
        except _GONE:
            continue  # ended or not ours to read: skipped, not fatal
        started.append(process)
    return started


def _read(process: psutil.Process) -> _Sample | None:
    try:
        with process.oneshot():
            return _Sample(
                process=process,
                name=process.name(),
                cpu_percent=process.cpu_percent(None),
                rss_bytes=process.memory_info().rss,
                status=process.status(),
            )
    except _GONE:
        return None


def _describe(sample: _Sample, total_memory: int) -> diagnostics_pb2.ProcessInfo:
    info = diagnostics_pb2.ProcessInfo(
        pid=sample.process.pid,
        name=sample.name,
        cpu_percent=round(sample.cpu_percent, 1),
        rss_bytes=sample.rss_bytes,
        memory_percent=round(100.0 * sample.rss_bytes / total_memory, 2) if total_memory else 0.0,
        status=sample.status,
    )
    try:
        info.username = sample.process.username()  # looked up for the top few only
    except (*_GONE, KeyError):
        info.username = ""
    return info


def collect_processes(ctx: CollectContext) -> diagnostics_pb2.ProcessFacts:
    started = time.perf_counter()
    watched = _start_window()
    time.sleep(max(0.0, SAMPLE_WINDOW_S - (time.perf_counter() - started)))
    samples = [s for s in map(_read, watched) if s is not None]
    sample_ms = round((time.perf_counter() - started) * 1000)
    total_memory = psutil.virtual_memory().total
    top = max(0, ctx.top_processes)
    by_cpu = sorted(samples, key=lambda s: s.cpu_percent, reverse=True)[:top]
    by_memory = sorted(samples, key=lambda s: s.rss_bytes, reverse=True)[:top]
    described: dict[int, diagnostics_pb2.ProcessInfo] = {}
    for sample in [*by_cpu, *by_memory]:
        if sample.process.pid not in described:
            described[sample.process.pid] = _describe(sample, total_memory)
    return diagnostics_pb2.ProcessFacts(
        total=len(samples),
        top_by_cpu=[described[s.process.pid] for s in by_cpu],
        top_by_memory=[described[s.process.pid] for s in by_memory],
        sample_ms=sample_ms,
    )
