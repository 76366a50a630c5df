"""`sonde webhook add|list|rotate|remove` as real processes against a real server, whose own
delivery sends a ticket's events to a real HTTPS receiver: the secret is shown by `add` (and a
new one by `rotate`) once, checks every POST's signature, and is in no later output and not in
the database file's bytes."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.deployment import Deployment, run
from tests.support.webhook_receiver import WebhookReceiver


def cli(deployment: Deployment, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    variables = deployment.cli_env()
    variables.pop("SONDE_WEBHOOK_SECRET", None)
    variables.update(env)
    return run("sonde", *args, env=variables, timeout=60)


def ok_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_add_shows_the_secret_once_and_the_receiver_verifies_every_event(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    with WebhookReceiver(tmp_path / "receiver") as receiver:
        ca_file = tmp_path / "receiver-ca.pem"
        ca_file.write_text(receiver.ca_pem)
        added = ok_json(
            cli(shared_sonde, "--json", "webhook", "add", receiver.url, "--ca", str(ca_file),
                "--events", "opened,comment")
        )  # fmt: skip
        secret = added["secret"]
        assert len(secret) >= 40
        receiver.state.secret = secret.encode()
        hook_id = added["webhook"]["id"]
        ticket = ok_json(cli(shared_sonde, "--json", "ticket", "open", "--title", "no sound"))
        ticket_id = ticket["ticket"]["id"]
        commented = cli(shared_sonde, "ticket", "comment", str(ticket_id), "muted")
        assert commented.returncode == 0, commented.stderr
        deadline = time.monotonic() + 30
        while len(receiver.state.events) < 2:
            assert time.monotonic() < deadline, "the server sent nothing"
            time.sleep(0.1)
        assert [e.document["ticket_id"] for e in receiver.state.events] == [ticket_id] * 2
        assert receiver.kinds() == ["opened", "comment"]
        assert receiver.state.unverified == 0

        listed = cli(shared_sonde, "webhook", "list")
        assert listed.returncode == 0, listed.stderr
        assert hook_id in listed.stdout
        as_json = ok_json(cli(shared_sonde, "--json", "webhook", "list"))
        ours = [hook for hook in as_json["webhooks"] if hook["id"] == hook_id]
        assert ours[0]["delivered"] == 2
        removed = cli(shared_sonde, "webhook", "remove", hook_id)
        assert removed.returncode == 0, removed.stderr
        assert "removed webhook" in removed.stdout
        for output in (listed.stdout, json.dumps(as_json), removed.stdout):
            assert secret not in output
        stored = b"".join(p.read_bytes() for p in shared_sonde.data.glob("sonde.db*"))
        assert secret.encode() not in stored


def test_a_secret_is_refused_on_the_command_line_and_http_is_refused(
    shared_sonde: Deployment,
) -> None:
    on_line = cli(shared_sonde, "webhook", "add", "https://h.example/x", "--secret", "s3cr3t-value")
    assert on_line.returncode == 2
    assert "s3cr3t-value" not in on_line.stdout + on_line.stderr
    plain = cli(shared_sonde, "webhook", "add", "http://127.0.0.1:9/x")
    assert plain.returncode == 1
    assert "plain http" in plain.stderr


def test_rotate_gives_a_new_secret_while_the_old_one_still_verifies(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    with WebhookReceiver(tmp_path / "receiver") as receiver:
        ca_file = tmp_path / "receiver-ca.pem"
        ca_file.write_text(receiver.ca_pem)
        added = ok_json(
            cli(shared_sonde, "--json", "webhook", "add", receiver.url, "--ca", str(ca_file),
                "--events", "opened")
        )  # fmt: skip
        old = added["secret"]
        receiver.state.secret = old.encode()
        hook_id = added["webhook"]["id"]

        shown = cli(shared_sonde, "webhook", "rotate", hook_id, "--overlap", "2h")
        assert shown.returncode == 0, shown.stderr
        said = " ".join(shown.stdout.split())
        assert f"webhook {hook_id} ({receiver.url}) has a new secret" in said
        assert "the old one still signs each POST beside it until" in said
        new = said.rsplit("shown this once: ", 1)[1].strip()
        assert len(new) >= 40
        assert new != old
        listed = cli(shared_sonde, "webhook", "list")
        assert "the previous secret signs too until" in " ".join(listed.stdout.split())

        # The receiver still on the old secret verifies the next event; then it switches.
        ok_json(cli(shared_sonde, "--json", "ticket", "open", "--title", "during"))
        deadline = time.monotonic() + 30
        while len(receiver.state.events) < 1:
            assert time.monotonic() < deadline, "the server sent nothing"
            time.sleep(0.1)
        assert receiver.state.events[0].signatures == 2
        receiver.state.secret = new.encode()
        ok_json(cli(shared_sonde, "--json", "ticket", "open", "--title", "switched"))
        while len(receiver.state.events) < 2:
            assert time.monotonic() < deadline, "the server sent nothing more"
            time.sleep(0.1)
        assert receiver.state.unverified == 0

        bad = cli(shared_sonde, "webhook", "rotate", hook_id, "--overlap", "8d")
        assert bad.returncode == 2
        assert "between 0 and 7d" in bad.stderr
        ann = shared_sonde.add_user("ann-rotates", "l1")
        refused = cli(shared_sonde, "webhook", "rotate", hook_id, SONDE_TOKEN=ann)
        assert refused.returncode == 1
        assert "webhooks.manage" in refused.stderr
        for output in (listed.stdout, refused.stdout, refused.stderr):
            assert new not in output
        stored = b"".join(p.read_bytes() for p in shared_sonde.data.glob("sonde.db*"))
        assert new.encode() not in stored
        assert old.encode() not in stored
