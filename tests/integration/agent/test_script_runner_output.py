"""A script's output: streamed while it runs, stored up to the cap with the original size
counted, and a script printing 1 GiB leaves the runner's memory where it was."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sonde.agent.remediation import OutputChunk, OutputStream, RunLimits, run
from tests.unit.agent.remediation.manifests import manifest, string_parameter

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX scripts")
LINUX = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
GIB = 1024**3
MIB = 1024**2


def test_output_arrives_while_the_script_still_runs(tmp_path: Path) -> None:
    """The script waits, after its first line, for a file that only the test's on_output
    creates: if nothing were streamed before the end, it would wait until its timeout."""
    entry = manifest("prints-waits-prints", timeout_s=120, parameters=string_parameter("go_file"))
    go_file = tmp_path / "go"
    script = b"""\
echo first
for _ in $(seq 1 600); do [ -e "$SONDE_PARAM_GO_FILE" ] && break; sleep 0.1; done
[ -e "$SONDE_PARAM_GO_FILE" ] || { echo 'no output was streamed' >&2; exit 7; }
echo second
"""
    chunks: list[OutputChunk] = []

    def on_output(chunk: OutputChunk) -> None:
        chunks.append(chunk)
        if b"first" in chunk.data:
            go_file.touch()

    values = entry.check_values({"go_file": str(go_file)})
    outcome = asyncio.run(run(entry, script, values, on_output=on_output))
    assert outcome.exit_code == 0, outcome.stderr
    assert not outcome.timed_out
    assert chunks[0].data == b"first\n"
    assert b"".join(c.data for c in chunks if c.stream is OutputStream.STDOUT) == outcome.stdout
    assert outcome.stdout == b"first\nsecond\n"


def test_output_over_the_cap_is_counted_and_marked_truncated() -> None:
    entry = manifest("prints-both", timeout_s=120)
    script = b"head -c 300000 /dev/zero; head -c 5000 /dev/zero | tr '\\0' e >&2\n"
    chunks: list[OutputChunk] = []
    limits = RunLimits(output_cap_bytes=100_000, chunk_bytes=4096)
    outcome = asyncio.run(run(entry, script, entry.check_values({}), limits=limits,
                              on_output=chunks.append))  # fmt: skip
    assert outcome.stdout == b"\0" * 100_000
    assert outcome.stdout_truncated
    assert outcome.stdout_size == 300_000
    assert outcome.stderr == b"e" * 5000
    assert not outcome.stderr_truncated
    assert outcome.stderr_size == 5000
    assert all(len(chunk.data) <= 4096 for chunk in chunks)
    assert sum(len(c.data) for c in chunks if c.stream is OutputStream.STDOUT) == 100_000


# Runs in its own interpreter: its RSS is the runner's and nothing else's. The peak is
# /proc/self/status's VmHWM (Linux); the test also samples the RSS with psutil.
FLOOD = """
import asyncio, json, sys
import psutil
from sonde.agent.remediation import run
from sonde.catalog.manifest import parse_manifest

entry = parse_manifest(sys.stdin.buffer.read())
streamed = 0

def on_output(chunk):
    global streamed
    streamed += len(chunk.data)

async def main():
    await run(entry, b"true\\n", entry.check_values({}))  # everything imported and warm
    before = psutil.Process().memory_info().rss
    print("ready", flush=True)
    outcome = await run(entry, b"head -c 1073741824 /dev/zero\\n", entry.check_values({}),
                        on_output=on_output)
    # VmHWM: this process's peak RSS (getrusage's ru_maxrss keeps the forking parent's).
    with open("/proc/self/status") as status:
        hwm = next(line for line in status if line.startswith("VmHWM:"))
    peak = int(hwm.split()[1]) * 1024
    print(json.dumps({
        "before": before, "peak": peak, "size": outcome.stdout_size,
        "kept": len(outcome.stdout), "truncated": outcome.stdout_truncated,
        "exit_code": outcome.exit_code, "streamed": streamed,
        "seconds": outcome.duration_s,
    }), flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
@LINUX
def test_a_script_printing_1_gib_is_stored_at_the_cap_and_memory_stays_flat() -> None:
    toml = """
id = "prints-a-gibibyte"
version = "1.0.0"
title = "Prints 1 GiB"
description = "Floods stdout."
platforms = ["linux"]
interpreter = "sh"
risk = "low"
timeout_s = 600
needs_admin = false
disruptive = false
reboot_required = false
idempotent = true
"""
    child = subprocess.Popen(
        [sys.executable, "-c", FLOOD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    child.stdin.write(toml)
    child.stdin.close()
    assert child.stdout.readline().strip() == "ready"
    watched = psutil.Process(child.pid)
    sampled_peak = 0
    while child.poll() is None:
        try:
            sampled_peak = max(sampled_peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    report = json.loads(child.stdout.readline())
    assert child.wait(timeout=60) == 0
    assert report["exit_code"] == 0
    assert report["size"] == GIB
    assert report["kept"] == MIB
    assert report["truncated"]
    assert report["peak"] - report["before"] < 50 * MIB, report
    assert sampled_peak - report["before"] < 50 * MIB, (sampled_peak, report)
    assert report["streamed"] == MIB  # the kept part was streamed, nothing more


def test_a_stalled_receiver_does_not_hold_the_run() -> None:
    entry = manifest("prints-to-a-stalled-receiver", timeout_s=60)
    taken: list[OutputChunk] = []

    async def stalls(chunk: OutputChunk) -> None:
        taken.append(chunk)
        await asyncio.Event().wait()  # never returns: the stream to the server stopped moving

    limits = RunLimits(flush_timeout_s=0.5)
    outcome = asyncio.run(
        run(entry, b"echo one; echo two >&2\n", entry.check_values({}), limits=limits,
            on_output=stalls)
    )  # fmt: skip
    assert outcome.exit_code == 0
    assert (outcome.stdout, outcome.stderr) == (b"one\n", b"two\n")
    assert len(taken) == 1
