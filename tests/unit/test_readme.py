"""The README's two setup commands stay true: CI runs the test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Setup: the two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_the_setup_section_has_exactly_two_commands() -> None:
    commands = setup_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("sonde demo")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup_commands()[1] in ci.splitlines()


# -- the deploy recipe: a folder made for the server's user, then every command as that user ---

UNIT = ROOT / "packaging" / "systemd" / "sonde-server.service"
SERVER_COMMAND = re.compile(r"(^|\s)sonde-server\s")


def shell_lines(section: str) -> list[str]:
    """The commands of a README section's sh blocks, continuation lines joined, no comments."""
    readme = (ROOT / "README.md").read_text()
    text = readme.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.+?)\n```", text, re.S)
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [" ".join(line.split()) for line in joined.splitlines() if not line.startswith("#")]


def unit_user_and_data() -> tuple[str, str]:
    unit = UNIT.read_text()
    user = re.search(r"^User=(\S+)$", unit, re.M)
    data = re.search(r"^ExecStart=\S+ run --data (\S+)$", unit, re.M)
    assert user is not None, "the unit names no User="
    assert data is not None, "the unit's ExecStart is no `run --data DIR`"
    return user.group(1), data.group(1)


def test_the_deploy_recipe_makes_the_data_folder_for_the_units_user_before_init() -> None:
    user, data = unit_user_and_data()
    lines = shell_lines("Deploying a server")
    made = f"sudo install -d -m 700 -o {user} -g {user} {data}"
    assert made in lines, lines
    init = next(i for i, line in enumerate(lines) if " sonde-server init " in line)
    assert lines.index(made) < init, "the folder must exist, owned by the user, before init"
    assert any(line.startswith(f"sudo useradd --system --home {data} {user}") for line in lines)


@pytest.mark.parametrize("section", ["Deploying a server", "Enrolling workstations"])
def test_every_server_command_runs_as_the_units_user_on_its_data_folder(section: str) -> None:
    user, data = unit_user_and_data()
    commands = [line for line in shell_lines(section) if SERVER_COMMAND.search(line)]
    assert commands
    for line in commands:
        assert line.startswith(f"sudo -u {user} sonde-server "), line
        assert f" --data {data}" in line, line
