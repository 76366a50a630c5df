"""Where the agent keeps its state, and the names of the files in it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

STATE_ENV = "SONDE_AGENT_STATE"

KEY_FILE = "agent.key"
CERT_FILE = "agent.crt"
CA_FILE = "ca.crt"
STATE_FILE = "agent.json"
# The catalog public key pinned at enrollment: only scripts it signed run (agent/catalog_key.py).
CATALOG_KEY_FILE = "catalog.pub"
# The server's dispatch public key pinned at enrollment: only orders it signed run.
DISPATCH_KEY_FILE = "dispatch.pub"
# The workstation's own remediation policy, written by the admin (sonde.catalog.policy).
POLICY_FILE = "policy.toml"
# A folder: one file per run order that started, kept until the order's expiry.
RUNS_DIR = "runs"
# The key of an enrollment not yet answered: a retry reuses it (agent/pending_key.py).
PENDING_KEY_FILE = "enrollment-pending.json"
# A folder: one file per result not yet acknowledged, and the ids already executed.
OUTBOX_DIR = "outbox"

# Files whose contents are secret (or reveal what the machine did): owner-only read too.
SECRET_FILES = (KEY_FILE, STATE_FILE, PENDING_KEY_FILE)
# Folders whose every file is secret; the folder itself is owner-only (0700) too.
SECRET_DIRS = (OUTBOX_DIR, RUNS_DIR)


# As root on macOS (the launchd daemon, packaging/launchd/org.sonde.agent.plist).
MACOS_SYSTEM_STATE_DIR = Path("/Library/Application Support/Sonde/agent")


def windows_system_state_dir() -> Path:
    """The Windows service's state folder (ProgramData\\Sonde\\agent)."""
    program_data = os.environ.get("PROGRAMDATA", r"C:\ProgramData")
    return Path(program_data) / "Sonde" / "agent"


def _is_admin() -> bool:
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


def default_state_dir() -> Path:
    """The state folder for this OS and user, unless SONDE_AGENT_STATE says otherwise."""
    override = os.environ.get(STATE_ENV)
    if override:
        return Path(override)
    if sys.platform == "win32":
        return windows_system_state_dir()
    if sys.platform == "darwin" and _is_admin():
        return MACOS_SYSTEM_STATE_DIR
    if sys.platform.startswith("linux") and _is_admin():
        return Path("/var/lib/sonde-agent")
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "sonde-agent"
