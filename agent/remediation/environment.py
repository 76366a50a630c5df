"""The environment a catalog script runs in on POSIX: built from scratch, never the agent's.

Nothing of the agent's own environment reaches the script (no proxy variables, no
LD_PRELOAD, no BASH_ENV to source, no credentials someone exported), only a fixed minimal
PATH, HOME, LANG, the parameters as SONDE_PARAM_<NAME> and the dry run as SONDE_DRY_RUN,
and SONDE_RUN_MARK: a random token per run by which the runner finds the script's processes
again, even one that left its process group (process_tree.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from sonde.catalog.manifest import DRY_RUN, ParameterValue

MINIMAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUN_MARK = "SONDE_RUN_MARK"
DRY_RUN_VARIABLE = "SONDE_DRY_RUN"
PARAMETER_PREFIX = "SONDE_PARAM_"


def parameter_variable(name: str) -> str:
    """The environment variable that carries parameter `name` (service_name ->
    SONDE_PARAM_SERVICE_NAME)."""
    return PARAMETER_PREFIX + name.upper()


def as_text(value: ParameterValue) -> str:
    """A checked value as the script reads it: bool as 1/0, int in decimal, text as is."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def agent_home() -> str:
    """The home folder of the user the agent runs as (root's on a service install)."""
    if sys.platform != "win32":
        import pwd

        try:
            return pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:
            pass
    return os.path.expanduser("~")


def script_environment(
    values: Mapping[str, ParameterValue],
    *,
    mark: str,
    home: Path | None = None,
    system: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of one run: the fixed variables (on Windows `system`, from
    windows_environment, instead) and the run's values."""
    if system is not None:
        environment = dict(system)
    else:
        environment = {
            "PATH": MINIMAL_PATH,
            "HOME": str(home) if home is not None else agent_home(),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
    environment[RUN_MARK] = mark
    for name, value in values.items():
        if name == DRY_RUN:
            environment[DRY_RUN_VARIABLE] = as_text(value)
        else:
            environment[parameter_variable(name)] = as_text(value)
    return environment


# Windows needs its own system variables to start anything (SystemRoot above all); they name
# folders, not secrets. Parameters never travel here on Windows: the parameter file does.
WINDOWS_KEPT = (
    "SystemRoot", "windir", "SystemDrive", "ComSpec", "PATH", "PATHEXT", "TEMP", "TMP",
    "ProgramData", "ProgramFiles", "ProgramFiles(x86)", "ProgramW6432", "CommonProgramFiles",
    "CommonProgramFiles(x86)", "NUMBER_OF_PROCESSORS", "PROCESSOR_ARCHITECTURE", "OS",
    "PSModulePath", "USERPROFILE", "APPDATA", "LOCALAPPDATA", "USERNAME", "COMPUTERNAME",
)  # fmt: skip


def windows_environment(inherited: Mapping[str, str]) -> dict[str, str]:
    """What a run on Windows keeps of the agent's environment: the system's folders."""
    lowered = {key.lower(): value for key, value in inherited.items()}
    return {key: lowered[key.lower()] for key in WINDOWS_KEPT if key.lower() in lowered}
