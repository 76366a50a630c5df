"""The agent's own collectors, sent to a machine over a shell and run there by its python3.

Nothing is installed on the machine and no file is written: the bootstrap (below) reads one
zip from its standard input and imports from it in memory. The zip holds the agent's
collectors, the generated diagnostics code and protobuf's pure-Python runtime, so the machine
needs only Python 3.11 or later and psutil. What comes back on standard output is one
serialized Snapshot, which the server parses as it parses an agent's.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import google.protobuf
from google.protobuf.message import DecodeError

import sonde
import sonde.agent.collectors
from sonde.server.remote.shell import RemoteError, RemoteErrorKind, RemoteShell
from sonde.v1 import diagnostics_pb2

# Exit codes of the bootstrap's probe: the machine cannot run the collectors, for this reason.
_OLD_PYTHON, _NO_PSUTIL = 3, 4
MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024  # gRPC's own receive limit for the same message

BOOTSTRAP = r"""
import sys
if sys.version_info < (3, 11):
    sys.exit(3)
try:
    import psutil  # noqa: F401
except ImportError:
    sys.exit(4)
if sys.argv[1:] == ["probe"]:
    sys.exit(0)
import asyncio, importlib.abc, importlib.util, io, os, zipfile
os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
archive = zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read()))
names = set(archive.namelist())

class Payload(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        base = name.replace(".", "/")
        for file, package in ((base + "/__init__.py", True), (base + ".py", False)):
            if file in names:
                return importlib.util.spec_from_loader(
                    name, self, origin="sonde-payload/" + file, is_package=package
                )
        return None

    def exec_module(self, module):
        file = module.__spec__.origin
        module.__file__ = file
        code = compile(archive.read(file.removeprefix("sonde-payload/")), file, "exec")
        exec(code, module.__dict__)

for loaded in [name for name in sys.modules if name.split(".")[0] in ("sonde", "google")]:
    del sys.modules[loaded]
sys.meta_path.insert(0, Payload())
from sonde.agent.collectors.runner import CollectContext, collect_snapshot
snapshot = asyncio.run(collect_snapshot(CollectContext(), sys.argv[2:]))
sys.stdout.buffer.write(snapshot.SerializeToString())
"""


def _python_files(root: Path, prefix: str) -> list[tuple[str, Path]]:
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = Path(folder) / name
                found.append((f"{prefix}/{path.relative_to(root).as_posix()}", path))
    return found


@dataclass(frozen=True)
class Payload:
    archive: bytes
    sha256: str


@cache
def collector_payload() -> Payload:
    """The zip the bootstrap imports from, built once per server process."""
    sonde_root = Path(sonde.__file__).resolve().parent
    entries = [
        ("sonde/__init__.py", sonde_root / "__init__.py"),
        ("sonde/v1/__init__.py", sonde_root / "v1" / "__init__.py"),
        ("sonde/v1/diagnostics_pb2.py", sonde_root / "v1" / "diagnostics_pb2.py"),
        ("sonde/agent/__init__.py", Path(sonde.agent.__file__).resolve()),
        *_python_files(
            Path(sonde.agent.collectors.__file__).resolve().parent, "sonde/agent/collectors"
        ),
        *_python_files(Path(google.protobuf.__file__).resolve().parent, "google/protobuf"),
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("google/__init__.py", "")
        for name, path in entries:
            # A fixed date: the same code gives the same bytes (and the same hash).
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    data = buffer.getvalue()
    return Payload(data, hashlib.sha256(data).hexdigest())


async def can_run_collectors(shell: RemoteShell, python: str) -> str:
    """ "" when `python` on the machine can run the collectors; else why not, in words."""
    probe = await shell.run([python, "-c", BOOTSTRAP, "probe"], timeout_s=15, max_output=4096)
    if probe.exit_code == 0:
        return ""
    if probe.exit_code == _OLD_PYTHON:
        return f"{python} there is older than Python 3.11"
    if probe.exit_code == _NO_PSUTIL:
        return f"{python} there has no psutil"
    return f"{python} did not start (exit code {probe.exit_code})"


async def collect_with_agent_code(
    shell: RemoteShell,
    python: str,
    *,
    timeout_s: float = 90.0,
    collectors: Sequence[str] = (),
) -> diagnostics_pb2.Snapshot:
    """Run the agent's collectors on the machine (`collectors`: only those, as a run's
    verification asks; their names, from the agent's own registry, are its arguments);
    RemoteError when they give no Snapshot."""
    payload = collector_payload()
    result = await shell.run(
        [python, "-c", BOOTSTRAP, "collect", *collectors],
        stdin=payload.archive,
        timeout_s=timeout_s,
        max_output=MAX_SNAPSHOT_BYTES,
    )
    where = shell.target.label
    if result.exit_code != 0:
        last = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["nothing"]
        raise RemoteError(
            RemoteErrorKind.PROTOCOL,
            f"the agent's collectors failed on {where} (exit code {result.exit_code}): "
            f"{last[0][:300]}",
        )
    if result.stdout_truncated:
        raise RemoteError(
            RemoteErrorKind.PROTOCOL,
            f"the snapshot from {where} is larger than {MAX_SNAPSHOT_BYTES} bytes; refused",
        )
    try:
        snapshot = diagnostics_pb2.Snapshot.FromString(result.stdout)
    except DecodeError as error:
        raise RemoteError(
            RemoteErrorKind.PROTOCOL, f"{where} sent back something that is not a snapshot"
        ) from error
    snapshot.collected_by = diagnostics_pb2.COLLECTED_BY_SSH_PYTHON
    return snapshot
