"""A push install on a Linux machine that passed preflight: the agent in its own venv, its
enrollment, its systemd unit.

1. unless the wanted version is installed already: `python3 -m venv --without-pip --clear
   PREFIX` (an older agent stopped first), one tar of the wheelhouse over SFTP into
   PREFIX/.wheels (0700, its SHA-256 checked, then each wheel's against SHA256SUMS), and pip,
   unpacked from its wheel, `install --no-index --find-links .wheels sonde-helpdesk==VERSION`
   (no package index needed);
2. enrollment with a one-time string sent on stdin (never in argv, so never in `ps`), unless
   the state folder already holds one (an upgrade in place keeps the agent's identity);
3. the unit file (sent on stdin, written 0644), `systemctl daemon-reload`, `enable` and
   `restart` (a running older agent is replaced); the wheels are removed.
Each step is bounded in time; a failure is a RemoteError or InstallFailed naming the step.
"""

from __future__ import annotations

import functools
import io
import json
import posixpath
import re
import shlex
import tarfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sonde.server.remote.linux_preflight import LinuxHost
from sonde.server.remote.shell import CommandResult, RemoteShell
from sonde.server.remote.wheelhouse import Wheelhouse

UNIT_NAME = "sonde-agent.service"
_AGENT_ID = re.compile(r"[a-z2-7]{26}")
# The enrollment string arrives on stdin; the state folder is argv[1]. Prints the agent id.
_ENROLL = (
    "import json, pathlib, sys\n"
    "from sonde.agent.enroll import enroll\n"
    "state = enroll(sys.stdin.read().strip(), pathlib.Path(sys.argv[1]))\n"
    "print(json.dumps({'agent_id': state.agent_id}))\n"
)
# Each script takes its values as "$1".., never spliced in; `step` says where it failed.
_STEP = 'step() { printf "while %s\\n" "$1" >&2; }; set -e; '
# $1 prefix, $2 wheel folder, $3 an agent is installed (yes/no), $4 unit, $5 owner or "".
_PREPARE = _STEP + (
    'if [ "$3" = yes ]; then step "stopping the old agent"; systemctl stop "$4" || true; fi; '
    'step "making the install folder"; mkdir -p -m 0755 -- "$1"; '
    'step "creating the venv"; python3 -m venv --without-pip --clear "$1"; '
    'step "making the wheel folder"; mkdir -p -m 0700 -- "$2"; '
    'if [ -n "$5" ]; then chown -- "$5" "$2"; fi'
)
# $1 prefix, $2 wheel folder, $3 pip's wheel, $4 the requirement. pip runs from its wheel,
# unpacked (twice as fast as from the zip), and installs from the folder alone.
_INSTALL = _STEP + (
    'cd -- "$2"; step "unpacking the wheels"; tar -xf wheelhouse.tar; '
    'step "checking the wheels"; sha256sum -c --quiet SHA256SUMS; '
    'step "unpacking pip"; "$1/bin/python" -m zipfile -e "$3" pip-unpacked; '
    'step "installing the agent"; PYTHONPATH="$2/pip-unpacked" "$1/bin/python" -m pip '
    'install --quiet --no-index --no-compile --disable-pip-version-check --find-links "$2" "$4"'
)
# $1 unit folder, $2 unit name, $3 wheel folder; the unit file's text on stdin.
_START = _STEP + (
    'step "writing the unit"; mkdir -p -- "$1"; cat > "$1/.$2.new"; '
    'chmod 0644 "$1/.$2.new"; mv -f -- "$1/.$2.new" "$1/$2"; '
    'step "reloading systemd"; systemctl daemon-reload; '
    'step "enabling the unit"; systemctl enable "$2"; '
    'step "starting the agent"; systemctl restart "$2"; '
    'rm -rf -- "$3"'
)
_ENROLLED_ID = (
    "import json, pathlib, sys\n"
    "print(json.loads(pathlib.Path(sys.argv[1], 'agent.json').read_text())['agent_id'])\n"
)


@dataclass(frozen=True)
class LinuxLayout:
    prefix: str = "/opt/sonde-agent"  # the venv
    state_dir: str = "/var/lib/sonde-agent"
    unit_dir: str = "/etc/systemd/system"


class InstallFailed(Exception):
    """A step ran and failed; `step` names it, the message carries the host's own words."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


@functools.cache
def _archive(wheelhouse: Wheelhouse) -> bytes:
    buffer = io.BytesIO()
    sums = "".join(f"{w.sha256}  {w.filename}\n" for w in wheelhouse.wheels).encode()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in [
            *((w.filename, w.data) for w in wheelhouse.wheels),
            ("SHA256SUMS", sums),
        ]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def wheelhouse_archive(wheelhouse: Wheelhouse) -> bytes:
    """One uncompressed tar of the wheels and their SHA256SUMS: one upload, its own hash
    checked by the upload and each wheel's checked on the host (built once per wheelhouse)."""
    return _archive(wheelhouse)


def unit_file(layout: LinuxLayout) -> str:
    command = shlex.join(
        [posixpath.join(layout.prefix, "bin", "sonde-agent"), "run", "--state", layout.state_dir]
    )
    return (
        "[Unit]\n"
        "Description=Sonde helpdesk agent\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n\n"
        "[Service]\n"
        f"ExecStart={command}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def _said(result: CommandResult) -> str:
    text = (result.stderr or result.stdout).decode("utf-8", "replace").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-3:])[:400] or f"exit code {result.exit_code}"


Stage = Callable[[str], Awaitable[None]]
Runner = Callable[..., Awaitable[CommandResult]]
Enrollment = Callable[[], Awaitable[str]]


async def install_linux(
    shell: RemoteShell,
    host: LinuxHost,
    wheelhouse: Wheelhouse,
    layout: LinuxLayout,
    *,
    enrollment: Enrollment,
    stage: Stage,
    step_timeout_s: float = 120.0,
) -> str:
    """Install, enroll, start; the agent's id. `enrollment()` issues the one-time string,
    asked only when the host has no enrollment yet; `stage(name)` marks progress."""
    admin = host.as_admin
    wheels = posixpath.join(layout.prefix, ".wheels")

    async def run(step: str, argv: list[str], *, stdin: bytes = b"") -> CommandResult:
        done = await shell.run([*admin, *argv], stdin=stdin, timeout_s=step_timeout_s)
        if done.exit_code != 0:
            raise InstallFailed(step, f"{step} failed on {shell.target.label}: {_said(done)}")
        return done

    await stage("install")
    python = posixpath.join(layout.prefix, "bin", "python")
    if host.installed_version != wheelhouse.agent_version:
        await _install(run, shell, host, wheelhouse, layout, timeout_s=step_timeout_s)

    await stage("enroll")
    if host.enrolled:
        said = await run("reading the enrollment", [python, "-c", _ENROLLED_ID, layout.state_dir])
        agent_id = said.stdout.decode("ascii", "replace").strip()
    else:
        secret = await enrollment()
        said = await run(
            "enrolling", [python, "-c", _ENROLL, layout.state_dir], stdin=secret.encode()
        )
        try:
            agent_id = str(json.loads(said.stdout.decode("utf-8"))["agent_id"])
        except (ValueError, KeyError, TypeError):
            agent_id = ""
    if not _AGENT_ID.fullmatch(agent_id):
        raise InstallFailed("enroll", f"{shell.target.label} gave no agent id after enrolling")

    await stage("start")
    await run(
        "starting the agent",
        ["sh", "-c", _START, "sh", layout.unit_dir, UNIT_NAME, wheels],
        stdin=unit_file(layout).encode(),
    )
    return agent_id


async def _install(
    run: Runner,
    shell: RemoteShell,
    host: LinuxHost,
    wheelhouse: Wheelhouse,
    layout: LinuxLayout,
    *,
    timeout_s: float,
) -> None:
    """The venv and the agent in it, an older one replaced."""
    wheels = posixpath.join(layout.prefix, ".wheels")
    owner = "" if host.root else shell.target.user  # SFTP writes as the login user
    installed = "yes" if host.installed_version else "no"
    await run(
        "preparing the venv",
        ["sh", "-c", _PREPARE, "sh", layout.prefix, wheels, installed, UNIT_NAME, owner],
    )
    await shell.upload(
        wheelhouse_archive(wheelhouse),
        posixpath.join(wheels, "wheelhouse.tar"),
        timeout_s=timeout_s,
    )
    requirement = f"sonde-helpdesk=={wheelhouse.agent_version}"
    await run(
        "installing the agent",
        ["sh", "-c", _INSTALL, "sh", layout.prefix, wheels, wheelhouse.pip_wheel, requirement],
    )
