"""A catalog run and its verification on a machine the server reached, by transport.

`prepare` does, before anyone connects, what the agent does before it runs anything: verify
the entry with the pinned catalog key, check the platform and interpreter for the transport
(bash or sh on Linux over SSH, PowerShell on Windows over WinRM), and check every parameter
against the manifest. `send` runs what was prepared on an open shell; `collect` gathers the
snapshot that verifies it over the same shell (the agent's collectors or the shell over
SSH, the agent's collect.ps1 over WinRM).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.catalog.bundle import SignedEntry
from sonde.catalog.manifest import Manifest, ParameterValue
from sonde.server.remote.remote_snapshot import RemoteSnapshot, collect_remote_snapshot
from sonde.server.remote.shell import (
    CommandResult,
    RemoteError,
    RemoteErrorKind,
    RemoteShell,
    Transport,
)
from sonde.server.remote.ssh import OnOutput, SshShell
from sonde.server.remote.ssh_catalog import checked_linux_entry, run_catalog_script
from sonde.server.remote.winrm import WinRMShell
from sonde.server.remote.winrm_catalog import catalog_run_document
from sonde.server.remote.winrm_snapshot import collect_windows_over_winrm

MAX_OUTPUT = 1024 * 1024  # each stream, as the agent keeps


@dataclass(frozen=True)
class PreparedRun:
    """A verified entry with its checked values, ready for its transport."""

    transport: Transport
    manifest: Manifest
    script: bytes
    values: Mapping[str, ParameterValue]  # SSH: for the environment
    document: bytes  # WinRM: the launcher's run document


@dataclass(frozen=True)
class ScriptOutcome:
    result: CommandResult
    timed_out: bool


def prepare(
    transport: Transport,
    entry: SignedEntry,
    catalog_key: ed25519.Ed25519PublicKey,
    parameters: Mapping[str, str],
    *,
    dry_run: bool,
) -> PreparedRun:
    """BundleError (not signed by the catalog key, changed since) or ManifestError (another
    platform or interpreter, a value refused), before any connection."""
    if transport is Transport.WINRM:
        manifest, document = catalog_run_document(entry, catalog_key, parameters, dry_run=dry_run)
        return PreparedRun(transport, manifest, entry.script, {}, document)
    manifest, values = checked_linux_entry(entry, catalog_key, parameters, dry_run=dry_run)
    return PreparedRun(transport, manifest, entry.script, values, b"")


async def send(
    shell: RemoteShell, prepared: PreparedRun, *, on_output: OnOutput | None = None
) -> ScriptOutcome:
    """Run it within the manifest's timeout; RemoteError when the host could not be made to
    run it or the connection failed meanwhile (a timeout over WinRM is an outcome: the host
    was told to stop it). `on_output`: the output as it comes, over SSH (WinRM gives it at
    the end)."""
    if isinstance(shell, WinRMShell):
        limit = float(prepared.manifest.timeout_s)
        try:
            result = await shell.run_document(
                prepared.document, timeout_s=limit, max_output=MAX_OUTPUT
            )
        except RemoteError as error:
            if error.kind is not RemoteErrorKind.TIMEOUT:
                raise
            stopped = CommandResult(-15, b"", error.message.encode(), duration_ms=int(limit * 1000))
            return ScriptOutcome(stopped, True)
        return ScriptOutcome(result, False)
    if not isinstance(shell, SshShell):
        raise TypeError(f"no catalog runs over {type(shell).__name__}")
    ran = await run_catalog_script(
        shell,
        prepared.manifest,
        prepared.script,
        prepared.values,
        max_output=MAX_OUTPUT,
        on_output=on_output,
    )
    return ScriptOutcome(ran.result, ran.timed_out)


async def collect(
    shell: RemoteShell, *, python: str = "python3", collectors: Sequence[str] = ()
) -> RemoteSnapshot:
    """The machine's snapshot now, over the shell the run used: only `collectors` where the
    agent's collectors run over SSH; collect.ps1 and the shell collection gather all."""
    if isinstance(shell, WinRMShell):
        return RemoteSnapshot(await collect_windows_over_winrm(shell), "")
    return await collect_remote_snapshot(shell, python=python, collectors=collectors)
