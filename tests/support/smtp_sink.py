"""A real SMTP server on loopback that keeps what it receives (aiosmtpd), for the notification
tests (docs/mail.md).

STARTTLS (required before MAIL) or implicit TLS with a throwaway CA and certificate for
127.0.0.1 (tests/support/listener_certificates.py), an optional AUTH with one user and
password, and `refused_recipients` it answers 550. Each received mail is kept with its exact
bytes as they came over the wire, so a test can look for an injected header.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.listener_certificates import listener_tls


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    recipients: tuple[str, ...]
    raw: bytes  # the DATA as received

    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Handler:
    refused_recipients: frozenset[str]
    received: list[ReceivedMail] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(  # aiosmtpd calls its hooks by these names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.lower() in self.refused_recipients:
            return f"550 5.1.1 no mailbox here for {address}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        with self.arrived:
            self.received.append(
                ReceivedMail(str(envelope.mail_from), tuple(envelope.rcpt_tos), bytes(raw))
            )
            self.arrived.notify_all()
        return "250 2.0.0 kept"


@dataclass
class SmtpSink:
    port: int
    ca_file: Path
    handler: _Handler
    user: str | None
    password: str

    @property
    def received(self) -> list[ReceivedMail]:
        return list(self.handler.received)

    def wait_for(self, count: int, timeout: float = 10) -> list[ReceivedMail]:
        with self.handler.arrived:
            if not self.handler.arrived.wait_for(
                lambda: len(self.handler.received) >= count, timeout
            ):
                raise AssertionError(
                    f"the SMTP sink received {len(self.handler.received)} mails, not {count}"
                )
            return list(self.handler.received)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_smtp_sink(
    folder: Path,
    *,
    implicit_tls: bool = False,
    user: str | None = None,
    password: str = "",
    refused_recipients: frozenset[str] = frozenset(),
) -> Iterator[SmtpSink]:
    """An SMTP server on a free port of 127.0.0.1, stopped at the end."""
    tls = listener_tls(folder, ["127.0.0.1"], label="smtp")
    handler = _Handler(frozenset(r.lower() for r in refused_recipients))

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        good = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=good, handled=False)

    options: dict[str, Any] = {
        # Implicit TLS is TLS from the first byte, which aiosmtpd's check does not see.
        "auth_require_tls": not implicit_tls,
        "authenticator": authenticate if user is not None else None,
        "auth_required": user is not None,
    }
    port = free_port()
    if implicit_tls:
        controller = Controller(
            handler, hostname="127.0.0.1", port=port, ssl_context=tls.context, **options
        )
    else:
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            tls_context=tls.context,
            require_starttls=True,
            **options,
        )
    controller.start()
    try:
        yield SmtpSink(port, tls.ca_file, handler, user, password)
    finally:
        controller.stop()
