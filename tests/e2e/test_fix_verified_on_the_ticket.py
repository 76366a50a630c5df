"""The closed loop end to end, with the real programs: the repo's own scripts/ signed by
`sonde-catalog sign` and published, a real agent, `sonde run --finding --resolve-if-cleared
--wait` following the script's output live, the verify check collected again by the agent,
and the ticket's timeline telling the run, its output and whether the finding cleared."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.deployment import Deployment, run

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "clear-temp-files-linux"
# Files untouched for a year, caches left alone: nothing a test machine still needs.
SAFE = ("--param", "older_than_days=365", "--param", "include_caches=0")


def cli(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return run("sonde", *args, env=deployment.cli_env(), timeout=180)


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, f"{done.stdout}{done.stderr}"
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def test_a_real_fix_is_followed_live_verified_and_told_on_the_ticket(
    sonde: Deployment, tmp_path: Path
) -> None:
    bundle = tmp_path / "catalog.bundle"
    signed = run(
        "sonde-catalog",
        "sign",
        "--key",
        str(sonde.data / "pki" / "catalog.key"),
        "--out",
        str(bundle),
        str(REPO / "scripts"),
        timeout=60,
    )
    assert signed.returncode == 0, signed.stderr
    assert cli(sonde, "catalog", "publish", str(bundle)).returncode == 0
    state = tmp_path / "agent" / "state"
    agent_id = sonde.enroll_agent(state)
    sonde.start_agent(state)
    sonde.wait_online(agent_id, timeout=20)

    ticket = as_json(
        cli(sonde, "ticket", "open", "--title", "disk full", "--agent", agent_id, "--json")
    )["ticket"]["id"]
    cli(sonde, "ticket", "assign", str(ticket))
    before = as_json(cli(sonde, "diag", agent_id, "--ticket", str(ticket), "--json"))
    disk_before = [f for f in before["snapshot"]["findings"] if f["check"] == "disk.space"]
    assert disk_before, before
    if disk_before[0]["severity"] != "SEVERITY_OK":  # a raised finding names its fix
        assert disk_before[0]["fix_script_id"] == SCRIPT, disk_before

    done = cli(
        sonde,
        "run",
        agent_id,
        SCRIPT,
        *SAFE,
        "--ticket",
        str(ticket),
        "--finding",
        "disk.space",
        "--resolve-if-cleared",
        "--wait",
    )
    assert done.returncode == 0, f"{done.stdout}{done.stderr}"
    # The script's own lines came live, before the run's detail that ends the command.
    live = done.stdout.index("older than 365 days from")
    assert live < done.stdout.index("exit code"), done.stdout
    assert "verification" in done.stdout, done.stdout
    assert "disk.space" in done.stdout, done.stdout

    runs = as_json(cli(sonde, "runs", "--ticket", str(ticket), "--json"))["runs"]
    [listed] = runs
    shown = as_json(cli(sonde, "runs", "show", listed["command"]["id"], "--json"))["run"]
    verification = shown["verification"]
    state_name = verification["state"]
    assert state_name in ("VERIFICATION_STATE_CLEARED", "VERIFICATION_STATE_NOT_CLEARED"), shown
    [check] = verification["checks"]
    assert check["check"] == "disk.space"
    assert check["seen_before"]
    assert check["seen_after"]
    assert check["before"] == disk_before[0]["severity"]

    got = as_json(cli(sonde, "ticket", "show", str(ticket), "--json"))
    kinds = [event["kind"] for event in got["timeline"]]
    for kind in ("SCRIPT_RUN", "RUN_ENDED", "VERIFIED"):
        assert f"TICKET_EVENT_KIND_{kind}" in kinds, kinds
    ended = next(e for e in got["timeline"] if e["kind"] == "TICKET_EVENT_KIND_RUN_ENDED")
    assert ended["run"].get("exit_code", 0) == 0
    assert "exit code 0" in ended["body"]
    timeline = json.dumps(got["timeline"])
    if state_name == "VERIFICATION_STATE_NOT_CLEARED":  # fuller than a year of temp files
        assert got["ticket"]["status"] == "TICKET_STATUS_IN_PROGRESS", got["ticket"]
        assert "still failing: disk.space" in timeline
    elif check["before"] == "SEVERITY_OK":  # nothing to clear: it does not claim it did
        assert got["ticket"]["status"] == "TICKET_STATUS_IN_PROGRESS", got["ticket"]
        assert "already ok before the run, so the run cleared nothing" in timeline
    else:
        assert got["ticket"]["status"] == "TICKET_STATUS_RESOLVED", got["ticket"]
        assert SCRIPT in got["ticket"]["resolution"]
    human = cli(sonde, "ticket", "show", str(ticket))
    assert "run ended" in human.stdout.lower() or "run_ended" in human.stdout.lower(), human.stdout

    stats = as_json(cli(sonde, "scripts", "stats", "--script", SCRIPT, "--json"))["stats"]
    assert (stats[0]["script_id"], stats[0]["runs"]) == (SCRIPT, 1), stats
