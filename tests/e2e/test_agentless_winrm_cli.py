"""`sonde hosts winrm`, `sonde diag NAME --winrm` and the fleet view as real processes: a real
`sonde-server` connects to the WinRS endpoint on loopback (recorded collect.ps1 documents
behind it) with a stored winrm-password credential, as the host's stored settings say.

Settings that could never connect are refused and store nothing; a wrong password (401) is
a clear refusal that stores no machine; the round trip shows in
`hosts list` (and --json) and goes with `hosts forget`; the diagnostic lands on the ticket;
`sonde agents` and `agent show` say how the machine is reached; `sonde diag NAME` and
`sonde run` without --winrm are refused naming the flag and the address, and queue nothing.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.deployment import Deployment, run
from tests.support.winrs_endpoint import WinRSEndpoint
from tests.support.winrs_programs import serve_transport, windows_collection

pytestmark = pytest.mark.timeout(240)

USER, PASSWORD = "helpdesk", "winrs-e2e-password"
DOCUMENTS = Path(__file__).parents[1] / "fixtures" / "windows"


@pytest.fixture
def winrs() -> Iterator[WinRSEndpoint]:
    with WinRSEndpoint(USER, PASSWORD) as endpoint:
        document = (DOCUMENTS / "print_jobs_stuck.json").read_bytes()
        serve_transport(endpoint, windows_collection(document), {})
        yield endpoint


def cli(deployment: Deployment, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    variables = deployment.cli_env()
    variables.pop("SONDE_CREDENTIAL_SECRET", None)
    variables.update(env, COLUMNS="200")
    return run("sonde", *args, env=variables, timeout=120)


def ok_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def said(done: subprocess.CompletedProcess[str]) -> str:
    return " ".join((done.stdout + done.stderr).split())


def test_winrm_settings_round_trip_and_a_diagnostic_over_winrm(
    sonde: Deployment, winrs: WinRSEndpoint
) -> None:
    address = f"127.0.0.1:{winrs.port}"
    target = f"{USER}@{address}"
    added = cli(
        sonde, "credentials", "add", "win-helpdesk", "--kind", "winrm-password",
        "--user", USER, "--hosts", "127.0.0.1", SONDE_CREDENTIAL_SECRET=PASSWORD,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    refused = cli(sonde, "hosts", "winrm", address, "--http", "--auth", "basic")
    assert refused.returncode != 0
    assert f"Basic authentication to {address} is refused" in said(refused)
    assert "nothing was stored" in said(refused)
    assert ok_json(cli(sonde, "--json", "hosts", "list")).get("winrm", []) == []

    stored = ok_json(
        cli(
            sonde,
            "--json",
            "hosts",
            "winrm",
            address,
            "--http",
            "--auth",
            "basic",
            "--allow-basic",
            "--allow-unencrypted",
            "--operation-timeout",
            "5",
        )
    )
    assert stored["host"]["auth"] == "basic"
    (listed,) = ok_json(cli(sonde, "--json", "hosts", "list"))["winrm"]
    assert (listed["host"], listed["port"], listed.get("https", False)) == (
        "127.0.0.1",
        winrs.port,
        False,
    )
    assert (listed["allow_basic"], listed["allow_unencrypted"]) == (True, True)
    assert (listed["operation_timeout_s"], listed["set_by"]) == (5, "admin")
    table = cli(sonde, "hosts", "list")
    assert table.returncode == 0, table.stderr
    assert "WinRM host settings" in table.stdout
    assert address in table.stdout

    wrong = cli(
        sonde, "credentials", "add", "win-wrong", "--kind", "winrm-password",
        "--user", USER, "--hosts", "127.0.0.1", SONDE_CREDENTIAL_SECRET="not-the-password",
    )  # fmt: skip
    assert wrong.returncode == 0, wrong.stderr
    refused_login = cli(sonde, "diag", "lpt-0417", "--winrm", target, "--credential", "win-wrong")
    assert refused_login.returncode != 0
    assert f"refused the credentials of {USER} (basic, HTTP 401)" in said(refused_login)
    assert ok_json(cli(sonde, "--json", "agents")).get("agents", []) == []
    assert cli(sonde, "credentials", "remove", "win-wrong").returncode == 0

    ticket = ok_json(cli(sonde, "--json", "ticket", "open", "--title", "printer queue stuck"))
    ticket_id = str(ticket["ticket"]["id"])
    done = cli(sonde, "diag", "lpt-0417", "--winrm", target, "--ticket", ticket_id)
    assert done.returncode == 0, done.stderr
    assert "collected over WinRM" in done.stdout
    answer = ok_json(cli(sonde, "--json", "diag", "lpt-0417", "--winrm", target))
    assert answer["snapshot"]["snapshot"]["collected_by"] == "COLLECTED_BY_WINRM"
    checks = {f["check"]: f["severity"] for f in answer["snapshot"]["findings"]}
    assert checks["print.stuck_jobs"] != "SEVERITY_OK"
    # A password given for this login alone (never the stored one, even though one fits):
    # the right one collects, a wrong one is refused by the host.
    once_done = cli(
        sonde, "--json", "diag", "lpt-0417", "--winrm", target, "--ask-password",
        SONDE_REMOTE_PASSWORD=PASSWORD,
    )  # fmt: skip
    once = ok_json(once_done)
    assert once["snapshot"]["snapshot"]["collected_by"] == "COLLECTED_BY_WINRM"
    wrong_once = cli(
        sonde, "diag", "lpt-0417", "--winrm", target, "--ask-password",
        SONDE_REMOTE_PASSWORD="not-" + PASSWORD,
    )  # fmt: skip
    assert wrong_once.returncode != 0
    assert f"refused the credentials of {USER} (basic, HTTP 401)" in said(wrong_once)
    assert "not-" + PASSWORD not in said(wrong_once)
    shown = ok_json(cli(sonde, "--json", "ticket", "show", ticket_id))
    assert "TICKET_EVENT_KIND_DIAGNOSTIC" in [event["kind"] for event in shown["timeline"]]

    (machine,) = ok_json(cli(sonde, "--json", "agents"))["agents"]
    assert (machine["reached_by"], machine["reach_address"]) == ("winrm", address)
    assert machine["hostname"] == "LPT-0417"
    fleet = cli(sonde, "agents")
    assert f"winrm {address}" in fleet.stdout
    assert "offline" not in fleet.stdout
    detail = cli(sonde, "agent", "show", "LPT-0417")
    assert f"winrm {address}, without an agent" in said(detail)

    commands_before = ok_json(cli(sonde, "--json", "commands"))
    queued = cli(sonde, "diag", "LPT-0417")
    assert queued.returncode != 0
    assert f"sonde diag LPT-0417 --winrm USER@{address}" in said(queued)
    ran = cli(sonde, "run", "LPT-0417", "clear-temp-files-windows")
    assert ran.returncode != 0
    assert f"sonde run LPT-0417 --winrm USER@{address}" in said(ran)
    assert ok_json(cli(sonde, "--json", "commands")) == commands_before

    forgot = cli(sonde, "hosts", "forget", address)
    assert forgot.returncode == 0, forgot.stderr
    assert f"dropped the WinRM settings of {address}" in said(forgot)
    assert ok_json(cli(sonde, "--json", "hosts", "list")).get("winrm", []) == []
