"""`sonde-server init` with a listener on every address: enrollment strings never name one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sonde.enrollment_bundle import decode_bundle
from tests.support.deployment import Deployment, run


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (
            ["--listen", "0.0.0.0:8443"],
            "--listen 0.0.0.0:8443 listens on every address, and no name says which one "
            "workstations reach: add --host NAME",
        ),
        (
            ["--listen", "[::]:8443", "--agent-address", "sonde-a.example.lan:8444"],
            "--listen [::]:8443 listens on every address",
        ),
        (
            ["--agent-listen", "0.0.0.0:8444"],
            "--agent-listen 0.0.0.0:8444 listens on every address, and no name says which one "
            "agents reach: add --host NAME, or --agent-address HOST:PORT",
        ),
        (
            ["--host", "0.0.0.0", "--listen", "0.0.0.0:8443"],
            "--host 0.0.0.0: that means every address; give the name workstations use",
        ),
    ],
)
def test_init_with_a_wildcard_bind_needs_the_name_workstations_reach(
    tmp_path: Path, options: list[str], said: str
) -> None:
    done = run("sonde-server", "init", "--data", str(tmp_path / "data"), *options)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"sonde-server init: {said}")
    assert not (tmp_path / "data").exists()


def test_an_enrollment_string_never_names_a_wildcard(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run(
        "sonde-server", "init", "--data", str(data), "--host", "sonde.example.lan",
        "--listen", "0.0.0.0:8443", "--agent-listen", "[::]:8444",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    # The server is not running: the string is made from server.json alone.
    made = run("sonde-server", "token", "create", "--data", str(data), "--json")
    assert made.returncode == 0, made.stderr
    bundle = decode_bundle(json.loads(made.stdout)["enrollment"])
    assert bundle.console_address == "sonde.example.lan:8443"
    assert list(bundle.agent_addresses) == ["sonde.example.lan:8444"]
    assert bundle.agent_address == "sonde.example.lan:8444"
    assert bundle.server_name == "sonde.example.lan"

    # Agents told their addresses: their listener may be on every address, without --host.
    told = tmp_path / "told"
    done = run(
        "sonde-server", "init", "--data", str(told),
        "--listen", "127.0.0.1:8443", "--agent-listen", "0.0.0.0:8444",
        "--agent-address", "sonde-a.example.lan:8444",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    made = run("sonde-server", "token", "create", "--data", str(told), "--json")
    bundle = decode_bundle(json.loads(made.stdout)["enrollment"])
    assert (bundle.console_address, list(bundle.agent_addresses)) == (
        "127.0.0.1:8443",
        ["sonde-a.example.lan:8444"],
    )


@pytest.mark.parametrize("address", ["0.0.0.0:8444", "[::]:8444"])
def test_a_wildcard_is_no_address_to_tell_agents(tmp_path: Path, address: str) -> None:
    refused = run(
        "sonde-server", "init", "--data", str(tmp_path / "data"), "--agent-address", address
    )
    assert refused.returncode == 2
    assert "agents cannot connect to" in refused.stderr
    assert not (tmp_path / "data").exists()

    sonde = Deployment(tmp_path / "other")
    sonde.init()
    made = run(
        "sonde-server", "token", "create", "--data", str(sonde.data), "--agent-address", address
    )
    assert made.returncode == 2
    assert "agents cannot connect to" in made.stderr
