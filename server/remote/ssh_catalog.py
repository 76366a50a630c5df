"""A catalog script run over SSH, bound to its parameters exactly as on the agent.

The server checks what the agent would: the entry's signature against the pinned catalog key
(sonde.catalog.bundle.verify_entry), that it is a bash or sh script for Linux, and every
parameter against its manifest. On the host, as the agent's runner does
(agent/remediation/runner.py): a fresh private folder (mktemp -d, umask 077), the script in
it at 0600 over SFTP with its SHA-256 checked, the interpreter started on the file (`bash
--noprofile --norc FILE`, `sh FILE`) under `timeout` (the manifest's timeout_s, then SIGKILL
a second later, to the whole process group), with an environment built from scratch: the
agent's own (sonde.agent.remediation.environment: the minimal PATH, HOME, LANG, the values as
SONDE_PARAM_<NAME>, SONDE_DRY_RUN, a run mark), sent on stdin to ssh_environment's bootstrap,
never on a command line. stdin is otherwise empty, and the folder is removed afterwards.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.agent.remediation.environment import script_environment
from sonde.catalog.bundle import SignedEntry, verify_entry
from sonde.catalog.manifest import Interpreter, Manifest, ManifestError, ParameterValue, Platform
from sonde.server.remote.shell import CommandResult, RemoteError, RemoteErrorKind
from sonde.server.remote.ssh import OnOutput, SshShell

_INTERPRETERS: Mapping[Interpreter, tuple[str, ...]] = {
    Interpreter.BASH: ("bash", "--noprofile", "--norc"),
    Interpreter.SH: ("sh",),
}
# Fixed text: a private folder for the run, then where it is and the login's home.
_MAKE_FOLDER = (
    'umask 077; d=$(mktemp -d "${TMPDIR:-/tmp}/sonde-run.XXXXXXXXXX") || exit 1; '
    'printf "%s\\n%s\\n" "$d" "$HOME"'
)
# The run's folder is its working folder, as on the agent.
_IN_FOLDER = 'cd -- "$1" || exit 125; shift; exec "$@"'
_FOLDER = re.compile(r"/[^\0\n]{0,4000}/sonde-run\.[A-Za-z0-9]{10}")
_HOME = re.compile(r"/[^\0\n]{0,4000}|")
_TIMED_OUT = (124, 137)  # timeout(1)'s status after TERM, and after the KILL that follows
TIMEOUT_MARGIN_S = 15.0  # the SSH command's own limit beyond the script's


@dataclass(frozen=True)
class SshRunOutcome:
    result: CommandResult
    timed_out: bool


def checked_linux_entry(
    entry: SignedEntry,
    catalog_key: ed25519.Ed25519PublicKey,
    parameters: Mapping[str, str],
    *,
    dry_run: bool,
) -> tuple[Manifest, dict[str, ParameterValue]]:
    """The verified manifest and the checked values; BundleError when the entry does not
    verify, ManifestError when it is not a shell script for Linux or a value is refused."""
    manifest = verify_entry(catalog_key, entry)
    if Platform.LINUX not in manifest.platforms or manifest.interpreter not in _INTERPRETERS:
        raise ManifestError(
            f"{entry.name} is a {manifest.interpreter.value} script for "
            f"{', '.join(p.value for p in manifest.platforms)}: over SSH only a bash or sh "
            "script for Linux runs"
        )
    return manifest, manifest.check_values(parameters, dry_run=dry_run)


async def _private_folder(shell: SshShell) -> tuple[str, str]:
    made = await shell.run(["sh", "-c", _MAKE_FOLDER], timeout_s=30)
    lines = made.stdout.decode("utf-8", "replace").split("\n")
    if made.exit_code != 0 or len(lines) < 2 or not _FOLDER.fullmatch(lines[0]):
        raise RemoteError(
            RemoteErrorKind.PROTOCOL,
            f"{shell.target.label} could not make a private folder for the run "
            f"(mktemp -d exited {made.exit_code}: "
            f"{made.stderr.decode('utf-8', 'replace').strip()[:200] or 'no folder named'})",
        )
    home = lines[1] if _HOME.fullmatch(lines[1]) else ""
    return lines[0], home or "/"


async def run_catalog_script(
    shell: SshShell,
    manifest: Manifest,
    script: bytes,
    values: Mapping[str, ParameterValue],
    *,
    max_output: int = 1024 * 1024,
    on_output: OnOutput | None = None,
) -> SshRunOutcome:
    """Run a verified entry (checked_linux_entry) on the shell's host within its timeout;
    RemoteError when the host cannot be made to run it."""
    folder, home = await _private_folder(shell)
    try:
        path = f"{folder}/{manifest.id}{manifest.interpreter.suffix}"
        await shell.upload(script, path)
        environment = script_environment(values, mark=secrets.token_hex(16), home=Path(home))
        limit = manifest.timeout_s
        argv = [
            *("sh", "-c", _IN_FOLDER, "sonde-cd", folder),
            *("timeout", "-k", "1", str(limit), *_INTERPRETERS[manifest.interpreter], path),
        ]
        result = await shell.run(
            argv,
            environment=environment,
            clean_environment=True,
            timeout_s=limit + TIMEOUT_MARGIN_S,
            max_output=max_output,
            on_output=on_output,
        )
    finally:
        # When the connection is gone, mktemp's folder stays: private, holding only the script.
        with contextlib.suppress(RemoteError):
            await shell.run(["rm", "-rf", "--", folder], timeout_s=30)
    timed_out = result.exit_code in _TIMED_OUT and result.duration_ms >= limit * 1000
    return SshRunOutcome(result, timed_out)
