"""What the transport's two fixed PowerShell scripts do, done in Python behind the WinRS
endpoint: the launcher reads the run document from stdin and hands the run to a test's
program; the receiver reassembles an upload from its base64 lines and answers its hash.

They read what the client sent over the wire (XML, base64, JSON), never what it meant to
send, so a value mangled anywhere on the way shows up in the test.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from sonde.agent.collectors.windows.document import collection_script
from sonde.server.remote import winrm_powershell as ps
from tests.support.winrs_endpoint import Handler, WinRSCommand, WinRSEndpoint, WinRSReply

FOLDER = "C:\\Windows\\Temp\\sonde-0123456789abcdef"


@dataclass(frozen=True)
class LaunchedRun:
    """A run as LAUNCHER would start it: file arguments resolved under FOLDER."""

    argv: list[str]
    files: dict[str, bytes]
    environment: dict[str, str]
    stdin: bytes

    def file_after(self, option: str) -> bytes:
        """The contents of the run file given as the argument after `option`."""
        path = self.argv[self.argv.index(option) + 1]
        assert path.startswith(FOLDER + "\\"), path
        return self.files[path[len(FOLDER) + 1 :]]


Program = Callable[[LaunchedRun], WinRSReply]


def _text(value: str) -> str:
    return base64.b64decode(value, validate=True).decode("utf-8")


def launcher(program: Program) -> Handler:
    def handle(command: WinRSCommand) -> WinRSReply:
        document = json.loads(command.stdin.decode("ascii"))
        if document["format"] != 1:
            return WinRSReply(stderr=b"run document format is not 1", exit_code=1)
        files = {_text(f["name"]): base64.b64decode(f["data"]) for f in document["files"]}
        argv = [
            f"{FOLDER}\\{_text(item['value'])}" if item["kind"] == "file" else _text(item["value"])
            for item in document["argv"]
        ]
        environment = {_text(v["name"]): _text(v["value"]) for v in document["environment"]}
        stdin = _text(document["stdin"]).encode("utf-8")
        return program(LaunchedRun(argv, files, environment, stdin))

    return handle


def receiver(files: dict[str, bytes], *, corrupt: bool = False) -> Handler:
    """Stores each upload in `files` when its hash is the header's; `corrupt` flips a bit
    of what arrived, as a broken transfer would."""

    def handle(command: WinRSCommand) -> WinRSReply:
        lines = command.stdin.split(b"\r\n")
        header = json.loads(lines[0])
        data = bytearray()
        for line in lines[1:]:
            if not line:
                break
            data += base64.b64decode(line, validate=True)
        if corrupt and data:
            data[len(data) // 2] ^= 0x01
        digest = hashlib.sha256(data).hexdigest()
        placed = digest == header["sha256"]
        if placed:
            files[_text(header["path"])] = bytes(data)
        answer = {"format": 1, "sha256": digest, "length": len(data), "placed": placed}
        return WinRSReply(stdout=json.dumps(answer).encode(), exit_code=0 if placed else 3)

    return handle


def serve_transport(endpoint: WinRSEndpoint, program: Program, files: dict[str, bytes]) -> None:
    """The endpoint answers the launcher with `program` and the receiver into `files`."""
    endpoint.on_script(ps.LAUNCHER, launcher(program))
    endpoint.on_script(ps.RECEIVER, receiver(files))


def is_windows_collection(run: LaunchedRun) -> bool:
    """The launcher starting the agent's own collect.ps1 with -File, byte for byte."""
    if run.argv[:1] != [ps.EXECUTABLE] or "-File" not in run.argv:
        return False
    script, bom = collection_script(), b"\xef\xbb\xbf"
    return run.file_after("-File") == (script if script.startswith(bom) else bom + script)


def windows_collection(recorded: bytes, otherwise: Program | None = None) -> Program:
    """A host whose collect.ps1 prints `recorded` (tests/fixtures/windows/*.json, documents
    the script printed); other runs go to `otherwise`."""

    def program(run: LaunchedRun) -> WinRSReply:
        if is_windows_collection(run):
            return WinRSReply(stdout=recorded, running=1)
        if otherwise is not None:
            return otherwise(run)
        return WinRSReply(stderr=f"unknown command {run.argv[0]}".encode(), exit_code=1)

    return program
