"""Mail no person wrote is recognised (server/intake/automatic_mail.py), so the helpdesk never
answers a bounce or an out-of-office and starts a loop."""

from __future__ import annotations

import pytest

from sonde.server.intake.automatic_mail import is_automatic

PERSON = b"From: Marie <marie@example.org>\r\nSubject: printer\r\n\r\nit jams\r\n"


@pytest.mark.parametrize(
    "headers",
    [
        b"Auto-Submitted: auto-replied\r\n",
        b"Auto-Submitted: auto-generated\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n",
        b"Precedence: bulk\r\n",
        b"Precedence: list\r\n",
        b"X-Autoreply: yes\r\n",
        b"Return-Path: <>\r\n",
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n",
    ],
)
def test_automatons_are_recognised(headers: bytes) -> None:
    assert is_automatic(headers + b"Subject: x\r\n\r\nbody\r\n")


def test_a_person_is_not_and_bad_bytes_never_raise() -> None:
    assert not is_automatic(PERSON)
    assert not is_automatic(b"Auto-Submitted: no\r\n" + PERSON)
    assert not is_automatic(b"")
    assert not is_automatic(b"\xff\xfe\x00garbage\r\n\r\n")
