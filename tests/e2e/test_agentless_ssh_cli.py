"""`sonde hosts trust` and `sonde diag NAME --ssh` as real processes: a real server logs in to a
real sshd on loopback with a stored key credential, and the snapshot lands on the ticket; an
untrusted key is refused with the command that fixes it, and a wrong fingerprint stores nothing.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.deployment import Deployment, run
from tests.support.sshd import Sshd, ed25519_pair, host_key_of, start_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    daemon = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield daemon
    daemon.stop()


def cli(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return run("sonde", *args, env=deployment.cli_env(), timeout=120)


def ok_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stdout + done.stderr
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def test_trust_then_diag_over_ssh_lands_on_the_ticket(
    shared_sonde: Deployment, sshd: Sshd, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{sshd.port}"
    key_file = tmp_path / "helpdesk_ed25519"
    key_file.write_bytes(sshd.user_key)
    key_file.chmod(0o600)
    added = cli(
        shared_sonde, "credentials", "add", "test-sshd", "--kind", "ssh-key",
        "--user", sshd.user, "--hosts", "127.0.0.1", "--key-file", str(key_file),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    target = f"{sshd.user}@{address}"
    untrusted = cli(shared_sonde, "diag", "lab-pc", "--ssh", target)
    assert untrusted.returncode != 0
    assert f"sonde hosts trust {address} --fingerprint {sshd.host_key.fingerprint}" in (
        untrusted.stderr.replace("\n", " ")
    )
    _, other = ed25519_pair()
    wrong = cli(
        shared_sonde, "hosts", "trust", address, "--fingerprint", host_key_of(other).fingerprint
    )
    assert wrong.returncode != 0
    assert "nothing was trusted" in wrong.stderr.replace("\n", " ")
    assert ok_json(cli(shared_sonde, "--json", "hosts", "list")).get("hosts", []) == []
    trusted = ok_json(
        cli(
            shared_sonde,
            "--json",
            "hosts",
            "trust",
            address,
            "--fingerprint",
            sshd.host_key.fingerprint,
        )
    )
    assert trusted["host"]["fingerprint"] == sshd.host_key.fingerprint
    listed = ok_json(cli(shared_sonde, "--json", "hosts", "list"))["hosts"]
    assert [(host["port"], host["key_type"]) for host in listed] == [(sshd.port, "ssh-ed25519")]
    ticket = ok_json(cli(shared_sonde, "--json", "ticket", "open", "--title", "lab PC slow"))
    ticket_id = str(ticket["ticket"]["id"])
    done = cli(shared_sonde, "diag", "lab-pc", "--ssh", target, "--ticket", ticket_id)
    assert done.returncode == 0, done.stderr
    assert "collected over SSH" in done.stdout
    answer = ok_json(cli(shared_sonde, "--json", "diag", "lab-pc", "--ssh", target, "--shell-only"))
    assert answer["snapshot"]["snapshot"]["collected_by"] == "COLLECTED_BY_SSH_SHELL"
    assert any(f["check"] == "disk.space" for f in answer["snapshot"]["findings"])
    shown = ok_json(cli(shared_sonde, "--json", "ticket", "show", ticket_id))
    kinds = [event["kind"] for event in shown["timeline"]]
    assert "TICKET_EVENT_KIND_DIAGNOSTIC" in kinds
    refused = cli(shared_sonde, "diag", "lab-pc", "--ssh", target, "--no-queue")
    assert refused.returncode != 0
    assert "--ssh collects now" in refused.stderr.replace("\n", " ")
