"""Where the state folder is by default, and the SONDE_AGENT_STATE override."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sonde.agent.paths import default_state_dir


def test_environment_variable_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SONDE_AGENT_STATE", str(tmp_path / "custom"))
    assert default_state_dir() == tmp_path / "custom"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux layout")
def test_linux_default_depends_on_the_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SONDE_AGENT_STATE", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    if os.geteuid() == 0:
        assert default_state_dir() == Path("/var/lib/sonde-agent")
    else:
        assert default_state_dir() == tmp_path / "xdg" / "sonde-agent"
