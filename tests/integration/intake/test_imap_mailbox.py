"""ImapMailbox against a real dovecot on loopback over IMAPS (tests/support/dovecot.py): new
mails by UID, mark done, nothing twice, a connection cut mid-fetch then a retry that gets the
same mail with the same UID and Message-ID, and the refusals (password, certificate,
UIDVALIDITY)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from sonde.server.intake.imap_mailbox import (
    ImapMailbox,
    MailboxAccount,
    MailboxRefused,
    MailboxUnreachable,
    UidValidityChanged,
)
from sonde.server.intake.mail_message import parse_mail, ticket_reference
from tests.support.cutting_proxy import cutting_proxy
from tests.support.dovecot import Dovecot, dovecot_available_or_reason, running_dovecot
from tests.support.listener_certificates import listener_tls

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(bool(dovecot_available_or_reason()), reason=dovecot_available_or_reason()),
]


@pytest.fixture(scope="module")
def dovecot_server() -> Iterator[Dovecot]:
    with running_dovecot() as server:  # one per module: its stop takes about a second
        yield server


@pytest.fixture
def dovecot(dovecot_server: Dovecot, request: pytest.FixtureRequest) -> Dovecot:
    """The module's dovecot with a new folder of this test's own as its inbox: each IMAP
    folder has its own UIDs (from 1) and UIDVALIDITY."""
    folder = re.sub(r"\W", "_", request.node.name)[:60]
    client = dovecot_server.connect()
    try:
        status, reply = client.create(folder)
        assert status == "OK", reply
    finally:
        client.logout()
    return dataclasses.replace(dovecot_server, inbox=folder)


def account(server: Dovecot, **changes: object) -> MailboxAccount:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "folder": server.inbox,
        "ca_file": server.ca_file,
        "timeout": 10.0,
    }
    values.update(changes)
    return MailboxAccount(**values)  # type: ignore[arg-type]


def request_mail(
    subject: str, body: str = "It does not work.", message_id: str | None = None
) -> bytes:
    message = EmailMessage()
    message["From"] = "Ada <ada@example.org>"
    message["To"] = "helpdesk@example.org"
    message["Subject"] = subject
    if message_id is not None:
        message["Message-ID"] = message_id
    message.set_content(body)
    return bytes(message)


def test_new_mails_by_uid_then_done_then_none(dovecot: Dovecot) -> None:
    dovecot.deliver(request_mail("VPN drops", message_id="<m1@example.org>"))
    dovecot.deliver(
        request_mail(f"Re: {ticket_reference(17)} VPN drops", message_id="<m2@example.org>")
    )
    with ImapMailbox(account(dovecot)) as mailbox:
        batch = mailbox.fetch_since(0, None)
        assert [mail.uid for mail in batch.mails] == [1, 2]
        assert not batch.more
        parsed = [parse_mail(mail.raw) for mail in batch.mails]
        assert [p.message_id for p in parsed] == ["<m1@example.org>", "<m2@example.org>"]
        assert [p.ticket_id for p in parsed] == [None, 17]
        for mail in batch.mails:
            mailbox.mark_done(mail.uid)
        mailbox.mark_done(2)  # twice is harmless
        assert mailbox.fetch_since(2, batch.uidvalidity).mails == ()
    flags = dovecot.flags_of_all()
    assert all(b"\\Seen" in line for line in flags.values())
    dovecot.deliver(request_mail("Printer jams"))
    with ImapMailbox(account(dovecot)) as mailbox:
        later = mailbox.fetch_since(2, batch.uidvalidity)
    assert [mail.uid for mail in later.mails] == [3]


def test_fetching_marks_nothing_seen(dovecot: Dovecot) -> None:
    dovecot.deliver(request_mail("one"))
    with ImapMailbox(account(dovecot)) as mailbox:
        assert len(mailbox.fetch_since(0, None).mails) == 1
    assert all(b"\\Seen" not in line for line in dovecot.flags_of_all().values())


def test_done_folder_moves_the_mail(dovecot: Dovecot) -> None:
    done = f"{dovecot.inbox}_done"
    client = dovecot.connect()
    client.create(done)
    client.logout()
    dovecot.deliver(request_mail("one"))
    with ImapMailbox(account(dovecot, done_folder=done)) as mailbox:
        batch = mailbox.fetch_since(0, None)
        mailbox.mark_done(batch.mails[0].uid)
        assert mailbox.fetch_since(0, batch.uidvalidity).mails == ()
    assert list(dovecot.flags_of_all(done)) == [1]


def test_a_batch_is_bounded_in_count_and_bytes(dovecot: Dovecot) -> None:
    for index in range(5):
        dovecot.deliver(request_mail(f"mail {index}", body="x" * 20_000))
    with ImapMailbox(account(dovecot)) as mailbox:
        by_count = mailbox.fetch_since(0, None, max_count=2)
        assert [m.uid for m in by_count.mails] == [1, 2]
        assert by_count.more
        by_bytes = mailbox.fetch_since(2, by_count.uidvalidity, max_bytes=45_000)
        assert [m.uid for m in by_bytes.mails] == [3, 4]
        assert by_bytes.more
        one_at_least = mailbox.fetch_since(4, by_count.uidvalidity, max_bytes=10)
        assert [m.uid for m in one_at_least.mails] == [5]
        assert not one_at_least.more
        cut = mailbox.fetch_since(4, by_count.uidvalidity, max_message_bytes=1000)
    assert cut.mails[0].truncated
    assert len(cut.mails[0].raw) == 1000
    assert parse_mail(cut.mails[0].raw).subject == "mail 4"


def test_a_connection_cut_mid_fetch_gets_the_same_mail_again(dovecot: Dovecot) -> None:
    big = request_mail("Screenshot attached", body="y" * 400_000, message_id="<big@example.org>")
    dovecot.deliver(big)
    with cutting_proxy(dovecot.port, cut_after=200_000) as proxy:
        cut_account = account(dovecot, port=proxy.port)
        mailbox = ImapMailbox(cut_account)
        mailbox.open()
        with pytest.raises(MailboxUnreachable, match="connection was lost during UID FETCH"):
            mailbox.fetch_since(0, None)
        mailbox.close()
        assert proxy.cuts == 1
        # The caller stored nothing; its next round asks again from the same cursor.
        with ImapMailbox(cut_account) as retry:
            batch = retry.fetch_since(0, None)
    assert [mail.uid for mail in batch.mails] == [1]
    assert batch.mails[0].raw.replace(b"\r\n", b"\n") == big.replace(b"\r\n", b"\n")
    assert parse_mail(batch.mails[0].raw).message_id == "<big@example.org>"


def test_the_uid_and_hashed_message_id_are_stable_across_fetches(dovecot: Dovecot) -> None:
    dovecot.deliver(b"From: a@b.example\r\nSubject: no id\r\n\r\nbody\r\n")
    with ImapMailbox(account(dovecot)) as first:
        one = first.fetch_since(0, None).mails[0]
    with ImapMailbox(account(dovecot)) as second:
        two = second.fetch_since(0, None).mails[0]
    assert one.uid == two.uid
    assert parse_mail(one.raw).message_id == parse_mail(two.raw).message_id


def test_starttls_reads_the_same_mailbox(dovecot: Dovecot) -> None:
    dovecot.deliver(request_mail("over STARTTLS"))
    starttls = account(dovecot, port=dovecot.starttls_port, starttls=True)
    with ImapMailbox(starttls) as mailbox:
        batch = mailbox.fetch_since(0, None)
    assert parse_mail(batch.mails[0].raw).subject == "over STARTTLS"


def test_starttls_with_a_certificate_not_from_the_ca_is_refused(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    other_ca = listener_tls(tmp_path, ["127.0.0.1"], label="other").ca_file
    starttls = account(dovecot, port=dovecot.starttls_port, starttls=True, ca_file=other_ca)
    with pytest.raises(MailboxRefused, match="certificate is not trusted"):
        ImapMailbox(starttls).open()


def test_a_wrong_password_is_refused_clearly() -> None:
    # A dovecot of its own: after a refused login, dovecot slows the next logins from the
    # same address for seconds, which would slow the other tests.
    with running_dovecot() as server:
        refused = MailboxAccount(
            "127.0.0.1", server.port, server.user, "wrong", ca_file=server.ca_file, timeout=10
        )
        with pytest.raises(MailboxRefused, match=r"refused the login of 'helpdesk'"):
            ImapMailbox(refused).open()


def test_a_certificate_not_from_the_ca_is_refused(dovecot: Dovecot, tmp_path: Path) -> None:
    other_ca = listener_tls(tmp_path, ["127.0.0.1"], label="other").ca_file
    with pytest.raises(MailboxRefused, match="certificate is not trusted"):
        ImapMailbox(account(dovecot, ca_file=other_ca)).open()


def test_the_system_store_does_not_trust_the_test_ca(dovecot: Dovecot) -> None:
    with pytest.raises(MailboxRefused, match="certificate is not trusted"):
        ImapMailbox(account(dovecot, ca_file=None)).open()


def test_a_changed_uidvalidity_is_reported(dovecot: Dovecot) -> None:
    dovecot.deliver(request_mail("one"))
    with ImapMailbox(account(dovecot)) as mailbox:
        current = mailbox.fetch_since(0, None).uidvalidity
        with pytest.raises(UidValidityChanged, match="start again from UID 0") as raised:
            mailbox.fetch_since(1, current + 1)
    assert raised.value.current == current
    assert raised.value.stored == current + 1


def test_nothing_listens_is_unreachable(dovecot: Dovecot) -> None:
    with cutting_proxy(dovecot.port, cut_after=0) as proxy:
        port = proxy.port
    with pytest.raises(MailboxUnreachable, match="could not be reached"):
        ImapMailbox(account(dovecot, port=port)).open()
