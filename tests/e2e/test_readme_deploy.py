"""The README's deploy recipe, run as written by the current user in a temporary folder: the
data folder made with `install -d` for the user, `init`, `run`, a technician, an enrollment
string, and a real agent enrolled with it.

What changes from the README: the folder's path, the user (this one, so no sudo and no
useradd), and `run` listens on 127.0.0.1 with ports the OS picks (its documented --listen
and --agent-listen, which override server.json) so the test takes no fixed port."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shlex
import stat
import subprocess
from pathlib import Path

from tests.support.deployment import Process, run, start, wait_for
from tests.unit.test_readme import shell_lines, unit_user_and_data

ENROLLMENT = re.compile(r"sonde-enroll-1\.\S+")


def as_this_user(line: str, user: str, data: str, here: Path) -> list[str] | None:
    """The README's line as this user runs it in `here`, or None for a line that needs root."""
    words = shlex.split(line.replace(data, str(here)))
    if words[:3] == ["sudo", "-u", user]:
        words = words[3:]
    elif words[:1] == ["sudo"]:
        words = words[1:]
    if words[0] in ("pip", "useradd"):
        return None  # the package is installed; this user exists
    if words[0] == "install":
        me, my_group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        words = [{user: me}.get(word, word) for word in words]
        words[words.index("-g") + 1] = my_group
    return words


def test_the_readmes_deploy_recipe_works_as_written(tmp_path: Path) -> None:
    user, data = unit_user_and_data()
    here = tmp_path / "lib" / "sonde-server"
    (tmp_path / "lib").mkdir()
    lines = shell_lines("Deploying a server") + [
        line for line in shell_lines("Enrolling workstations") if "sonde-server" in line
    ]
    server: Process | None = None
    said: list[str] = []
    ran: list[str] = []
    try:
        for line in lines:
            if "--agent-address" in line:
                continue  # the replicas' variant of init: one init per folder
            words = as_this_user(line, user, data, here)
            if words is None:
                continue
            ran.append(" ".join(words[:2]))
            if words[:2] == ["sonde-server", "run"]:
                listen = ["--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0"]
                server = start("sonde-server", [*words[1:], *listen], tmp_path / "server.log")
                wait_for("the server to listen", (here / "listening.json").exists, 30)
                continue
            if words[0] == "sonde-server":
                done = run(*words)
            else:
                done = subprocess.run(
                    words, capture_output=True, text=True, timeout=30, check=False
                )
            assert done.returncode == 0, (line, done.stdout, done.stderr)
            said.append(done.stdout)
            if words[0] == "install":
                mode = here.stat()
                assert stat.S_IMODE(mode.st_mode) == 0o700
                assert mode.st_uid == os.getuid()
        assert ran == [
            "install -d",
            "sonde-server init",
            "sonde-server run",
            "sonde-server user",
            "sonde-server token",
        ]
        assert server is not None
        assert server.alive(), server.log()
        enrollment = ENROLLMENT.search(said[-1])
        assert enrollment is not None, said[-1]
        state = tmp_path / "agent-state"
        enrolled = run("sonde-agent", "enroll", enrollment.group(0), "--state", str(state))
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        assert json.loads((state / "agent.json").read_text())["agent_id"]
    finally:
        if server is not None:
            server.stop()
