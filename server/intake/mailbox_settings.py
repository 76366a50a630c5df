"""The mailbox `sonde-server run --mailbox` reads: its URL, password and CA, checked before the
server starts, each refusal saying what is wrong.

    imaps://helpdesk@mail.example.org/INBOX          IMAP over TLS, port 993
    imap+starttls://helpdesk@mail.example.org:143/Helpdesk

The password never goes on the command line: it comes from SONDE_MAILBOX_PASSWORD or from a
file (`--mailbox-password-file`, owner-only). The server's certificate is checked against
`--mailbox-ca` or the system's trust store, with its host name.
"""

from __future__ import annotations

import os
import stat
import urllib.parse
from pathlib import Path

from sonde.server.intake.imap_mailbox import MailboxAccount

PASSWORD_VARIABLE = "SONDE_MAILBOX_PASSWORD"  # noqa: S105 (the variable's name)
_SCHEMES = {"imaps": (993, False), "imap+starttls": (143, True)}


class BadMailbox(ValueError):
    """The mailbox settings cannot be used; the message says why."""


def _password(password_file: Path | None) -> str:
    if password_file is None:
        password = os.environ.get(PASSWORD_VARIABLE, "")
        if not password:
            raise BadMailbox(
                f"the mailbox needs its password: set {PASSWORD_VARIABLE} or give "
                "--mailbox-password-file FILE"
            )
        return password
    try:
        mode = password_file.stat().st_mode
        text = password_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BadMailbox(
            f"cannot read the mailbox password file {password_file}: {error}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BadMailbox(
            f"{password_file} can be read by others (mode {stat.S_IMODE(mode):o}): "
            f"chmod 600 {password_file}"
        )
    password = text.strip("\r\n")
    if not password:
        raise BadMailbox(f"{password_file} is empty")
    return password


def mailbox_account(
    url: str,
    *,
    password_file: Path | None = None,
    ca_file: Path | None = None,
    done_folder: str | None = None,
) -> MailboxAccount:
    """The account `url` names, with its password; BadMailbox saying what is wrong."""
    try:
        where = urllib.parse.urlsplit(url)
        port = where.port
    except ValueError as error:
        raise BadMailbox(f"{url[:80]!r} is not a mailbox URL: {error}") from None
    if where.scheme not in _SCHEMES:
        raise BadMailbox(
            f"{url[:80]!r}: the mailbox is imaps://USER@HOST[:PORT]/FOLDER or "
            "imap+starttls://USER@HOST[:PORT]/FOLDER (plain IMAP is refused)"
        )
    if where.password is not None:
        raise BadMailbox(
            f"the password is not given in the URL (it would be in `ps`): use {PASSWORD_VARIABLE}"
        )
    if not where.username or not where.hostname:
        raise BadMailbox(f"{url[:80]!r}: say the user and the host, USER@HOST")
    default_port, starttls = _SCHEMES[where.scheme]
    if ca_file is not None and not ca_file.is_file():
        raise BadMailbox(f"the mailbox CA file {ca_file} does not exist")
    folder = urllib.parse.unquote(where.path.lstrip("/")) or "INBOX"
    return MailboxAccount(
        host=where.hostname,
        port=port or default_port,
        user=urllib.parse.unquote(where.username),
        password=_password(password_file),
        folder=folder,
        done_folder=done_folder or None,
        ca_file=ca_file,
        starttls=starttls,
    )
