"""`sonde run HOST SCRIPT --ssh` as real processes: a real `sonde-server` logs in to a real sshd
on loopback with a stored key credential and runs the repository's own scripts, signed by the
real `sonde-catalog sign` with the deployment's catalog key: the output, exit code and
verification land on the ticket, `sonde runs` and `runs show` mark the transport, and a
high-risk script waits for another person's approval, then runs once; kill -9 of the server
while a script sleeps on the host ends the run interrupted after the restart, never run again."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.catalog.bundle import CatalogSource
from tests.support.catalog_bundles import manifest_text, signed_bundle
from tests.support.deployment import Deployment, run, wait_for
from tests.support.sshd import Sshd, start_sshd

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    daemon = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield daemon
    daemon.stop()


def cli(
    deployment: Deployment, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run("sonde", *args, env=deployment.cli_env(token), timeout=180)


def ok_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stdout + done.stderr
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def _reachable_over_ssh(sonde: Deployment, sshd: Sshd, tmp_path: Path) -> str:
    """The sshd's user key stored as `lab-key` and its host key trusted, by the CLI; the
    USER@HOST:PORT to give --ssh."""
    key_file = tmp_path / "helpdesk_ed25519"
    key_file.write_bytes(sshd.user_key)
    key_file.chmod(0o600)
    added = cli(
        sonde, "credentials", "add", "lab-key", "--kind", "ssh-key", "--user", sshd.user,
        "--hosts", "127.0.0.1", "--key-file", str(key_file),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    address = f"127.0.0.1:{sshd.port}"
    trusted = cli(sonde, "hosts", "trust", address, "--fingerprint", sshd.host_key.fingerprint)
    assert trusted.returncode == 0, trusted.stderr
    return f"{sshd.user}@{address}"


def test_catalog_scripts_run_over_ssh_with_their_output_on_the_ticket(
    shared_sonde: Deployment, sshd: Sshd, tmp_path: Path
) -> None:
    sonde = shared_sonde
    bundle = tmp_path / "catalog.bundle"
    key = str(sonde.data / "pki" / "catalog.key")
    signed = run(
        "sonde-catalog", "sign", "--key", key, "--out", str(bundle), str(REPO / "scripts"),
        timeout=60,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert cli(sonde, "catalog", "publish", str(bundle)).returncode == 0
    target = _reachable_over_ssh(sonde, sshd, tmp_path)

    never_seen = cli(sonde, "run", "lab-pc", "clear-temp-files-linux", "--ssh", target)
    assert never_seen.returncode != 0
    assert "collect a diagnostic first" in never_seen.stderr.replace("\n", " ")
    diagnosed = ok_json(cli(sonde, "--json", "diag", "lab-pc", "--ssh", target, "--shell-only"))
    machine = diagnosed["command"]["agent_id"]
    ticket = ok_json(
        cli(sonde, "--json", "ticket", "open", "--title", "disk full", "--agent", machine)
    )
    ticket_id = str(ticket["ticket"]["id"])

    done = cli(
        sonde, "run", machine, "clear-temp-files-linux",
        "--param", "older_than_days=365", "--param", "include_caches=false",
        "--ssh", target, "--credential", "lab-key", "--ticket", ticket_id,
        "--finding", "disk.space", "--wait",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"over ssh://{target}" in done.stdout
    runs = ok_json(cli(sonde, "--json", "runs", "--ticket", ticket_id))["runs"]
    assert len(runs) == 1
    (shown,) = runs
    assert shown["reached_by"] == f"ssh://{target}"
    assert shown["command"]["state"] == "COMMAND_STATE_SUCCEEDED"
    detail = cli(sonde, "runs", "show", shown["command"]["id"])
    assert detail.returncode == 0, detail.stderr
    flat = " ".join(detail.stdout.split())
    assert f"ssh://{target}" in flat
    assert "lab-key" in flat
    timeline = ok_json(cli(sonde, "--json", "ticket", "show", ticket_id))["timeline"]
    kinds = [
        event["kind"] for event in timeline if event.get("command_id") == shown["command"]["id"]
    ]
    assert kinds == [
        "TICKET_EVENT_KIND_SCRIPT_RUN",
        "TICKET_EVENT_KIND_RUN_ENDED",
        "TICKET_EVENT_KIND_VERIFIED",
    ]
    ended = next(e for e in timeline if e["kind"] == "TICKET_EVENT_KIND_RUN_ENDED")
    assert ended["run"]["ended"] is True
    assert ended["run"].get("exit_code", 0) == 0  # JSON leaves a zero out
    assert ended["run"]["stdout"]  # the output's tail is on the ticket
    verified = next(e for e in timeline if e["kind"] == "TICKET_EVENT_KIND_VERIFIED")
    assert verified["run"]["verification"]["state"] in (
        "VERIFICATION_STATE_CLEARED",
        "VERIFICATION_STATE_NOT_CLEARED",
    )

    # High risk: asked by the admin, approved by an L2, then run once by the server.
    message = "Save your work: IT restarts at 5; it's quick!"
    asked = ok_json(
        cli(
            sonde,
            "--json",
            "run",
            machine,
            "reboot-with-notice-linux",
            "--dry-run",
            "--param",
            f"message={message}",
            "--ssh",
            target,
        )
    )["run"]
    assert asked["command"]["state"] == "COMMAND_STATE_PENDING_APPROVAL"
    approver = sonde.add_user("lena", "l2")
    approved = cli(sonde, "approve", asked["command"]["id"], token=approver)
    assert approved.returncode == 0, approved.stderr
    followed = cli(sonde, "runs", "show", asked["command"]["id"], "--follow")
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert f"telling users: {message}" in " ".join(followed.stdout.split())
    final = ok_json(cli(sonde, "--json", "runs", "show", asked["command"]["id"]))["run"]
    assert final["command"]["state"] == "COMMAND_STATE_SUCCEEDED"
    assert final["command"]["deliveries"] == 1


NOTE_AND_NAP = """
[[parameters]]
name = "tag"
type = "string"
pattern = "[a-z0-9-]{1,40}"
required = true
description = "what the script appends to the test's file"

[[parameters]]
name = "nap"
type = "int"
minimum = 0
maximum = 60
default = 0
description = "seconds to sleep after writing it"
"""


def test_a_server_killed_mid_run_ends_it_interrupted_and_never_runs_it_again(
    sonde: Deployment, sshd: Sshd, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.log"
    key = serialization.load_pem_private_key(
        (sonde.data / "pki" / "catalog.key").read_bytes(), password=None
    )
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    script = (
        f"#!/bin/bash\nprintf '%s\\n' \"$SONDE_PARAM_TAG\" >> '{ran}'\nsleep \"$SONDE_PARAM_NAP\"\n"
    )
    bundle = tmp_path / "catalog.bundle"
    bundle.write_bytes(
        signed_bundle(
            key,
            CatalogSource(
                manifest_text("note-and-nap", parameters=NOTE_AND_NAP).encode(), script.encode()
            ),
        )
    )
    assert cli(sonde, "catalog", "publish", str(bundle)).returncode == 0
    target = _reachable_over_ssh(sonde, sshd, tmp_path)
    machine = ok_json(cli(sonde, "--json", "diag", "lab-pc", "--ssh", target, "--shell-only"))[
        "command"
    ]["agent_id"]
    asked = cli(
        sonde, "--json", "run", machine, "note-and-nap", "--param", "tag=once",
        "--param", "nap=30", "--ssh", target,
    )  # fmt: skip
    run_id = ok_json(asked)["run"]["command"]["id"]
    wait_for("the script to start on the host", lambda: ran.exists() or None, timeout=30)
    sonde.kill_server()  # kill -9 while the script sleeps on the host
    sonde.start_server()

    def ended() -> dict[str, Any] | None:
        shown = cli(sonde, "--json", "runs", "show", run_id)
        if shown.returncode != 0:
            return None
        found: dict[str, Any] = json.loads(shown.stdout)["run"]
        return found if found["command"]["state"] == "COMMAND_STATE_INTERRUPTED" else None

    # The dead server's lease lapses (15 s), then the new one's upkeep (every 5 s) ends it.
    final = wait_for("the run to end interrupted", ended, timeout=60, interval=1.0)
    reason = " ".join(final["command"]["reason"].split())
    assert "whether the script ran on the machine, or to its end, is unknown" in reason
    assert "it is not run again" in reason
    assert final["command"]["deliveries"] == 1
    assert ran.read_text() == "once\n"  # it ran once, and was not started again
