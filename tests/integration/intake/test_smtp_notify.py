"""Notifications sent to a real SMTP server on loopback (tests/support/smtp_sink.py): the
reference in the subject, STARTTLS and implicit TLS with the certificate verified, a login,
header injection through the subject or a name neutralised in the bytes received, and each
refusal as NotificationNotSent with what the server answered."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from sonde.server.intake.mail_message import parse_mail
from sonde.server.intake.smtp_notify import (
    InvalidNotification,
    NotificationKind,
    NotificationNotSent,
    SmtpRelay,
    SmtpSecurity,
    build_notification,
    send_notification,
)
from tests.support.listener_certificates import listener_tls
from tests.support.smtp_sink import SmtpSink, running_smtp_sink

pytestmark = pytest.mark.timeout(30)


def relay(sink: SmtpSink, **changes: object) -> SmtpRelay:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": sink.port,
        "ca_file": sink.ca_file,
        "timeout": 10.0,
    }
    values.update(changes)
    return SmtpRelay(**values)  # type: ignore[arg-type]


def opened(title: str = "VPN drops", recipient_name: str = "Ada Lovelace") -> EmailMessage:
    return build_notification(
        kind=NotificationKind.OPENED,
        ticket_id=17,
        title=title,
        body="We have your request.\nA technician will look at it.",
        sender="helpdesk@example.org",
        recipient="ada@example.org",
        recipient_name=recipient_name,
    )


def headers_of(raw: bytes) -> list[str]:
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\n") if not line[:1].isspace()]


def test_a_notification_arrives_with_the_reference(tmp_path: Path) -> None:
    with running_smtp_sink(tmp_path) as sink:
        message = build_notification(
            kind=NotificationKind.ASSIGNED,
            ticket_id=17,
            title="VPN drops",
            body="Ticket 17 is yours.",
            sender="helpdesk@example.org",
            recipient="tech@example.org",
        )
        send_notification(relay(sink), message)
        (received,) = sink.wait_for(1)
    assert received.recipients == ("tech@example.org",)
    got = received.message()
    assert got["Subject"] == "[Sonde #17] Assigned to you: VPN drops"
    assert got["X-Sonde-Ticket"] == "17"
    assert parse_mail(received.raw).ticket_id == 17  # a reply comes back to the same ticket
    assert parse_mail(received.raw).body == "Ticket 17 is yours."


# aiosmtpd cannot tell that implicit TLS is TLS, and warns about AUTH without it.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_and_a_login(tmp_path: Path) -> None:
    with running_smtp_sink(tmp_path, implicit_tls=True, user="sonde", password="pw") as sink:
        send_notification(
            relay(sink, security=SmtpSecurity.IMPLICIT_TLS, user="sonde", password="pw"),
            opened(),
        )
        assert len(sink.wait_for(1)) == 1


def test_a_wrong_login_says_what_the_server_answered(tmp_path: Path) -> None:
    with (
        running_smtp_sink(tmp_path, user="sonde", password="pw") as sink,
        pytest.raises(NotificationNotSent, match=r"answered 535"),
    ):
        send_notification(relay(sink, user="sonde", password="bad"), opened())


def test_a_refused_recipient_says_what_the_server_answered(tmp_path: Path) -> None:
    with (
        running_smtp_sink(tmp_path, refused_recipients=frozenset({"ada@example.org"})) as sink,
        pytest.raises(NotificationNotSent, match=r"ada@example.org: 550 5.1.1 no mailbox"),
    ):
        send_notification(relay(sink), opened())


def test_a_certificate_not_from_the_ca_is_refused(tmp_path: Path) -> None:
    other_ca = listener_tls(tmp_path / "other", ["127.0.0.1"], label="other").ca_file
    with (
        running_smtp_sink(tmp_path) as sink,
        pytest.raises(NotificationNotSent, match="certificate is not trusted"),
    ):
        send_notification(relay(sink, ca_file=other_ca), opened())
    assert sink.received == []


def test_header_injection_in_the_subject_or_a_name_is_neutralised(tmp_path: Path) -> None:
    title = "Printer\r\nBcc: victim@evil.example\r\n\r\nfake body"
    name = "Ada\r\nX-Injected: yes\nCc: other@evil.example"
    with running_smtp_sink(tmp_path) as sink:
        send_notification(relay(sink), opened(title=title, recipient_name=name))
        (received,) = sink.wait_for(1)
    names = headers_of(received.raw)
    assert "Bcc" not in names
    assert "Cc" not in names
    assert "X-Injected" not in names
    assert received.recipients == ("ada@example.org",)
    got = received.message()
    assert got["Subject"] == (
        "[Sonde #17] Your request is open: Printer Bcc: victim@evil.example fake body"
    )
    assert got.get_payload(decode=True).startswith(b"We have your request.")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "recipient",
    [
        "ada@example.org\r\nBcc: victim@evil.example",
        "ada@example.org, eve@evil.example",
        "Ada <ada@example.org>",
        "not an address",
        "",
    ],
)
def test_a_recipient_that_is_not_one_address_is_refused(recipient: str) -> None:
    with pytest.raises(InvalidNotification):
        build_notification(
            kind=NotificationKind.RESOLVED,
            ticket_id=1,
            title="t",
            body="b",
            sender="helpdesk@example.org",
            recipient=recipient,
        )


def test_nothing_listening_is_not_sent() -> None:
    with pytest.raises(NotificationNotSent, match="could not be used"):
        send_notification(SmtpRelay("127.0.0.1", 1, timeout=2), opened())
