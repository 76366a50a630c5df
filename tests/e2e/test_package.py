"""The wheel as a workstation gets it: `sonde-helpdesk`, one `sonde.` namespace, agent-only deps.

Built from this tree and installed into a fresh venv with its base dependencies only (what
`pip install sonde-helpdesk` does on a workstation): the agent collects, and the server's
dependencies are not there to be imported by accident.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("sqlalchemy", "alembic", "aiosqlite", "asyncpg", "rich", "grpc_health")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_is_sonde_helpdesk_with_one_namespace(wheel: Path) -> None:
    assert wheel.name.startswith("sonde_helpdesk-")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert top_level == {"sonde"}, top_level
    for package in ("sonde/agent/cli.py", "sonde/server/cli.py", "sonde/v1/agent_pb2.py"):
        assert package in names
    # The wire-contract helpers both sides use sit beside sonde.v1, not in the agent.
    assert "sonde/identity.py" in names
    assert "sonde/enrollment_bundle.py" in names
    assert any(name.startswith("sonde/server/storage/migrations/versions/") for name in names)
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Name: sonde-helpdesk" in text


def test_installed_alone_it_gives_an_agent_without_the_server_deps(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=600)
    for module in SERVER_ONLY:
        missing = subprocess.run(
            [str(python), "-c", f"import {module}"], capture_output=True, timeout=60, check=False
        )
        assert missing.returncode != 0, f"{module} was installed with the agent"
    stray = subprocess.run(
        [str(python), "-c", "import agent, server"],
        capture_output=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert stray.returncode != 0, "a top-level `agent` or `server` package was installed"
    collected = subprocess.run(
        [str(target / "bin" / "sonde-agent"), "collect", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert collected.returncode == 0, collected.stderr
    assert json.loads(collected.stdout)["snapshot"]["system"]["hostname"]
    server = subprocess.run(
        [str(target / "bin" / "sonde-server"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # The server's entry point is there, but says what to install instead of a traceback.
    assert server.returncode != 0
    assert "sonde-helpdesk[server]" in server.stdout + server.stderr
    assert "Traceback" not in server.stderr
