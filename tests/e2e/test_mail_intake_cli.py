"""`sonde-server run --mailbox` as a real process reading a real dovecot over IMAPS: a mail
becomes a ticket a technician sees with `sonde ticket list`, a reply with its reference a
comment; a server killed and started again reads nothing twice; bad mailbox settings refuse
the start saying why."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from sonde.server.intake.mail_message import ticket_reference
from tests.support.deployment import Deployment, run, wait_for
from tests.support.dovecot import Dovecot, dovecot_available_or_reason, running_dovecot
from tests.support.smtp_sink import running_smtp_sink

pytestmark = pytest.mark.skipif(
    bool(dovecot_available_or_reason()), reason=dovecot_available_or_reason()
)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as opened:
        yield opened


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


def _mail(subject: str, body: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Marie Dupont <marie@example.org>"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.org")
    message.set_content(body)
    return bytes(message)


def _tickets(sonde: Deployment) -> list[dict[str, Any]]:
    done = run("sonde", "ticket", "list", "--json", env=sonde.cli_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout).get("tickets", []))


def test_mail_becomes_a_ticket_and_a_reply_a_comment_once_across_a_kill(
    tmp_path: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, stack: ExitStack
) -> None:
    """The email channel whole: the mail read, its ticket, the requester told its reference
    over SMTP, the reply on the timeline."""
    folder = f"e2e_{uuid.uuid4().hex[:8]}"
    client = dovecot.connect()
    try:
        assert client.create(folder)[0] == "OK"
    finally:
        client.logout()
    url = f"imaps://{dovecot.user}@127.0.0.1:{dovecot.port}/{folder}"
    sink = stack.enter_context(running_smtp_sink(tmp_path / "smtp"))
    mailbox = ["--mailbox", url, "--mailbox-ca", str(dovecot.ca_file), "--mail-interval", "5"]
    mailbox += ["--smtp", f"smtp+starttls://127.0.0.1:{sink.port}", "--smtp-ca", str(sink.ca_file)]
    mailbox += ["--smtp-from", "helpdesk@example.org"]
    sonde = Deployment(tmp_path)
    sonde.init()
    monkeypatch.setenv("SONDE_MAILBOX_PASSWORD", dovecot.password)
    dovecot.deliver(_mail("Outlook asks for my password all day", "since Monday"), folder)
    sonde.start_server(*mailbox)
    try:
        (ticket,) = wait_for("the mail's ticket", lambda: _tickets(sonde) or None, timeout=30)
        assert ticket["title"] == "Outlook asks for my password all day"
        assert ticket["channel"] == "TICKET_CHANNEL_EMAIL"
        assert ticket["requester"] == "Marie Dupont <marie@example.org>"
        (told,) = sink.wait_for(1, timeout=30)
        assert told.recipients == ("marie@example.org",)
        assert told.message()["Subject"].startswith(f"[Sonde #{ticket['id']}] Your request is open")

        # Killed and started again: the mail is not read twice (its Message-ID is taken).
        sonde.kill_server()
        sonde.start_server(*mailbox)
        reference = ticket_reference(int(ticket["id"]))
        dovecot.deliver(_mail(f"Re: {reference} Outlook", "it asked again at 10:02"), folder)

        def commented() -> dict[str, Any] | None:
            shown = run(
                "sonde", "ticket", "show", str(ticket["id"]), "--json",
                env=sonde.cli_env(), timeout=60,
            )  # fmt: skip
            timeline = json.loads(shown.stdout)["timeline"]
            mails = [event for event in timeline if event.get("actor") == "mail"]
            return mails[-1] if len(mails) >= 2 else None

        reply = wait_for("the reply's comment", commented, timeout=30)
        assert "it asked again at 10:02" in reply["body"]
        assert len(_tickets(sonde)) == 1
    finally:
        sonde.stop()
    log = (tmp_path / "server.log").read_text()
    assert re.search(r"mail intake from \S+: 1 opened", log), log[-2000:]
    assert dovecot.password not in log


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--mailbox", "imap://h@127.0.0.1/INBOX"], "plain IMAP is refused"),
        (["--mailbox", "imaps://h:secret@127.0.0.1/INBOX"], "the password is not given in the URL"),
        (["--mailbox", "imaps://127.0.0.1/INBOX"], "say the user and the host"),
        (
            ["--mailbox", "imaps://h@127.0.0.1/INBOX", "--mailbox-ca", "/nonexistent.pem"],
            "does not exist",
        ),
        (["--mailbox", "imaps://h@127.0.0.1/INBOX", "--mail-interval", "1"], "from 5 to 3600"),
        (["--smtp", "smtp://127.0.0.1"], "plain SMTP is refused"),
        (["--smtp", "smtps://127.0.0.1", "--smtp-from", "not an address"], "--smtp-from"),
        (["--smtp", "smtps://bob@127.0.0.1", "--smtp-from", "a@b.org"], "SONDE_SMTP_PASSWORD"),
    ],
)
def test_bad_mailbox_settings_refuse_the_start(
    tmp_path: Path, flags: list[str], said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SONDE_MAILBOX_PASSWORD", "x")
    done = run("sonde-server", "run", "--data", str(tmp_path / "none"), *flags)
    assert done.returncode == 1
    assert said in done.stderr
    assert "secret" not in done.stderr


def test_a_mailbox_without_its_password_refuses_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SONDE_MAILBOX_PASSWORD", raising=False)
    loose = tmp_path / "password"
    loose.write_text("hunter2\n")
    loose.chmod(0o644)
    base = ["sonde-server", "run", "--data", str(tmp_path), "--mailbox", "imaps://h@127.0.0.1/"]
    missing = run(*base)
    assert "set SONDE_MAILBOX_PASSWORD or give --mailbox-password-file" in missing.stderr
    readable = run(*base, "--mailbox-password-file", str(loose))
    assert "can be read by others (mode 644): chmod 600" in readable.stderr
    assert "hunter2" not in readable.stderr
