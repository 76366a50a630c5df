"""A catalog script run over WinRM, bound to its parameters exactly as on the agent.

The server checks what the agent would: the entry's signature against the pinned catalog
key (sonde.catalog.bundle.verify_entry, as publishing does), that it is a PowerShell script
for Windows, and every parameter against its manifest. Then the launcher writes the agent's
own three files into a private folder on the host (the fixed PROLOGUE, the parameter file,
the script with its byte order mark: sonde.agent.remediation.powershell) and starts the
agent's command line over them, so a value reaches the script's param() block as data and
nowhere else. Permissions, approvals, expiry and audit are the caller's (a run's record).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.agent.remediation import powershell
from sonde.catalog.bundle import SignedEntry, verify_entry
from sonde.catalog.manifest import Interpreter, Manifest, ManifestError, Platform
from sonde.server.remote import winrm_powershell as ps
from sonde.server.remote.shell import CommandResult
from sonde.server.remote.winrm import WinRMShell

PROLOGUE_FILE = "prologue.ps1"
PARAMETER_FILE = "parameters.json"


def catalog_run_document(
    entry: SignedEntry,
    catalog_key: ed25519.Ed25519PublicKey,
    parameters: Mapping[str, str],
    *,
    dry_run: bool = False,
) -> tuple[Manifest, bytes]:
    """The verified manifest and the launcher's run document; BundleError when the entry
    does not verify, ManifestError when it is not for Windows or a parameter is refused."""
    manifest = verify_entry(catalog_key, entry)
    if Platform.WINDOWS not in manifest.platforms or manifest.interpreter is not (
        Interpreter.POWERSHELL
    ):
        raise ManifestError(
            f"{entry.name} is a {manifest.interpreter.value} script for "
            f"{', '.join(p.value for p in manifest.platforms)}: over WinRM only a PowerShell "
            "script for Windows runs"
        )
    values = manifest.check_values(parameters, dry_run=dry_run)
    script_file = f"{manifest.id}{manifest.interpreter.suffix}"
    files = [
        ps.RunFile(PROLOGUE_FILE, powershell.PROLOGUE.encode("ascii")),
        ps.RunFile(PARAMETER_FILE, powershell.parameter_file(manifest, values)),
        ps.RunFile(script_file, powershell.script_source(entry.script)),
    ]
    names = {file.name for file in files}
    command = powershell.powershell_command(
        ps.EXECUTABLE, Path(PROLOGUE_FILE), Path(PARAMETER_FILE), Path(script_file)
    )
    # The agent's own command line, its three paths as the host's folder will name them.
    argv = [ps.FileArgument(item) if item in names else item for item in command]
    return manifest, ps.run_document(argv, files=files)


async def run_catalog_script(
    shell: WinRMShell,
    entry: SignedEntry,
    catalog_key: ed25519.Ed25519PublicKey,
    parameters: Mapping[str, str],
    *,
    dry_run: bool = False,
    max_output: int = 1024 * 1024,
) -> CommandResult:
    """Run a signed catalog entry on the shell's host within its manifest's timeout."""
    manifest, document = catalog_run_document(entry, catalog_key, parameters, dry_run=dry_run)
    return await shell.run_document(
        document, timeout_s=float(manifest.timeout_s), max_output=max_output
    )
