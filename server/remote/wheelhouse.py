"""The wheels a push install puts on a Linux machine: a folder the admin built once.

`pip wheel --wheel-dir DIR sonde-helpdesk` (or `pip download`) plus pip's own wheel
(`pip download --no-deps --dest DIR pip`): the host creates the agent's venv without pip and
installs with pip run from its wheel, `--no-index --find-links`, so it needs no route to any
package index. Read once; each wheel's SHA-256 is checked on the host after the upload.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

AGENT_DISTRIBUTION = "sonde_helpdesk"
# name-version(-build)?-python-abi-platform.whl (PEP 427); names normalised with "_".
_WHEEL = re.compile(
    r"(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.+!]+)(-\d[^-]*)?"
    r"-(?P<python>[^-]+)-(?P<abi>[^-]+)-(?P<platform>[^-]+)\.whl"
)
MAX_WHEELS = 200
MAX_WHEELHOUSE_BYTES = 512 * 1024 * 1024


class WheelhouseError(ValueError):
    """The folder cannot serve a push install; the message says what to build."""


@dataclass(frozen=True)
class Wheel:
    filename: str
    data: bytes
    sha256: str
    python: str  # cp311, py3
    abi: str  # cp311, abi3, none
    platform: str  # manylinux2014_x86_64, any


@dataclass(frozen=True)
class Wheelhouse:
    folder: Path
    wheels: tuple[Wheel, ...]
    agent_version: str  # the sonde-helpdesk wheel's: what a deployed agent reports
    pip_wheel: str  # the file name of pip's wheel, run as `python PIP.whl/pip`

    @property
    def python_tags(self) -> frozenset[str]:
        """The CPython versions (cp311) its version-bound binary wheels were built for; empty
        when every wheel is pure or abi3, so any Python 3 fits."""
        return frozenset(w.python for w in self.wheels if w.abi not in {"none", "abi3"})

    @property
    def architectures(self) -> frozenset[str]:
        """The machine architectures (x86_64, aarch64) its binary wheels are for."""
        found: set[str] = set()
        for wheel in self.wheels:
            for platform in wheel.platform.split("."):
                if platform.startswith(("manylinux", "musllinux", "linux")):
                    found.add(_architecture(platform))
        return frozenset(found)

    @property
    def size(self) -> int:
        return sum(len(w.data) for w in self.wheels)


def _architecture(platform: str) -> str:
    """manylinux2014_x86_64, manylinux_2_17_x86_64, linux_x86_64 -> x86_64 (uname -m)."""
    for known in ("x86_64", "aarch64", "i686", "armv7l", "ppc64le", "s390x"):
        if platform.endswith(known):
            return known
    return platform


def load_wheelhouse(folder: Path) -> Wheelhouse:
    """Read every wheel in `folder`; WheelhouseError naming what is missing or wrong."""
    if not folder.is_dir():
        raise WheelhouseError(
            f"the wheelhouse {folder} is not a folder (docs/deploy.md builds one)"
        )
    wheels: list[Wheel] = []
    total = 0
    for path in sorted(folder.glob("*.whl")):
        if path.is_symlink() or not path.is_file():
            raise WheelhouseError(f"{path} is not a regular file; copy the wheel itself in")
        match = _WHEEL.fullmatch(path.name)
        if match is None:
            raise WheelhouseError(f"{path.name} is not a wheel's file name (PEP 427)")
        data = path.read_bytes()
        total += len(data)
        if len(wheels) >= MAX_WHEELS or total > MAX_WHEELHOUSE_BYTES:
            raise WheelhouseError(
                f"{folder} holds more than {MAX_WHEELS} wheels or "
                f"{MAX_WHEELHOUSE_BYTES // 2**20} MiB: keep only the agent's"
            )
        wheels.append(
            Wheel(
                filename=path.name,
                data=data,
                sha256=hashlib.sha256(data).hexdigest(),
                python=match["python"],
                abi=match["abi"],
                platform=match["platform"],
            )
        )
    agents = [w for w in wheels if w.filename.startswith(AGENT_DISTRIBUTION + "-")]
    pips = [w for w in wheels if w.filename.startswith("pip-")]
    if len(agents) != 1:
        found = ", ".join(w.filename for w in agents) or "none"
        raise WheelhouseError(
            f"the wheelhouse {folder} must hold exactly one {AGENT_DISTRIBUTION} wheel "
            f"(found {found}): pip wheel --wheel-dir {folder} sonde-helpdesk"
        )
    if len(pips) != 1:
        raise WheelhouseError(
            f"the wheelhouse {folder} must hold exactly one pip wheel, which installs the agent "
            f"on the host: pip download --no-deps --dest {folder} pip"
        )
    version = _WHEEL.fullmatch(agents[0].filename)
    assert version is not None
    return Wheelhouse(folder, tuple(wheels), version["version"], pips[0].filename)
