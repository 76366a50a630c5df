"""The helpdesk's mailbox read over IMAP with TLS, by UID, so that each mail makes one ticket.

The UID is the cursor: `fetch_since(last_uid, uidvalidity)` returns the mails whose UID is above
`last_uid` (whatever their flags; fetched with BODY.PEEK, so reading marks nothing), bounded in
count and bytes. `mark_done(uid)` then flags the mail \\Seen, or moves it to `done_folder`; it is
for the people who look at the mailbox, not the cursor, and doing it twice is harmless.

Exactly once, the caller's part (docs/mail.md):

1. `batch = mailbox.fetch_since(last_uid, uidvalidity)`;
2. for each mail, in ONE database transaction: unless its (uidvalidity, uid) or its Message-ID
   is already stored, store the ticket or comment and the row (uidvalidity, uid, Message-ID),
   and move the stored cursor `last_uid` to that uid; commit;
3. only then `mailbox.mark_done(uid)`.

A connection cut mid-fetch stores nothing: the next round fetches the same UIDs again with the
same bytes. A crash after the commit and before `mark_done` leaves the mail unmarked but
behind the cursor: no second ticket; calling `mark_done(last_uid)` again at start puts the flag.
When the server's UIDVALIDITY is not the stored one, its UIDs mean other mails:
`UidValidityChanged` is raised, and the caller starts again from `last_uid = 0` with the new
value, the stored Message-IDs keeping the mails already taken from making a second ticket.

The code is sync (imaplib). From asyncio: `await asyncio.to_thread(mailbox.fetch_since, ...)`,
one mailbox per thread at a time. Every socket operation has `timeout` seconds.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

DEFAULT_BATCH_COUNT = 50
DEFAULT_BATCH_BYTES = 50 * 1024 * 1024
DEFAULT_MESSAGE_BYTES = 25 * 1024 * 1024

_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")


class MailboxError(Exception):
    """The mailbox could not be read; the message says what was refused and by whom."""


class MailboxRefused(MailboxError):
    """The server or its certificate was refused, or it refused our login: retrying the same
    settings will not help."""


class MailboxUnreachable(MailboxError):
    """The connection failed, timed out or was cut: the next round may succeed, and fetches
    the same mails again."""


class UidValidityChanged(MailboxError):
    def __init__(self, folder: str, stored: int, current: int) -> None:
        super().__init__(
            f"the UIDVALIDITY of {folder} is {current}, not the stored {stored}: its UIDs now "
            "name other mails; start again from UID 0 with the new value and dedup by "
            "Message-ID"
        )
        self.stored = stored
        self.current = current


@dataclass(frozen=True)
class MailboxAccount:
    host: str
    port: int = 993
    user: str = ""
    password: str = ""
    folder: str = "INBOX"
    # mark_done moves the mail there (the server must offer MOVE, RFC 6851); None: flags \Seen
    done_folder: str | None = None
    ca_file: Path | None = None  # None: the system's trust store
    starttls: bool = False  # False: implicit TLS (IMAPS, port 993); True: give port 143
    timeout: float = 30.0


@dataclass(frozen=True)
class FetchedMail:
    uid: int
    raw: bytes
    size: int  # the server's RFC822.SIZE
    truncated: bool  # over the per-mail cap: only the first bytes were fetched


@dataclass(frozen=True)
class MailBatch:
    uidvalidity: int
    mails: tuple[FetchedMail, ...]
    more: bool  # mails above the last one returned are waiting: fetch again


def _tls_context(account: MailboxAccount) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(account.ca_file) if account.ca_file is not None else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context  # CERT_REQUIRED and check_hostname are create_default_context's


class ImapMailbox:
    """One logged-in IMAP session on `account.folder`; a context manager (`with
    ImapMailbox(account) as mailbox:`), or `open()` and `close()`."""

    def __init__(self, account: MailboxAccount) -> None:
        self.account = account
        self._client: imaplib.IMAP4 | None = None
        self._uidvalidity = 0

    def __enter__(self) -> ImapMailbox:
        self.open()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def where(self) -> str:
        return f"{self.account.user}@{self.account.host}:{self.account.port}/{self.account.folder}"

    def open(self) -> None:
        account = self.account
        context = _tls_context(account)
        try:
            if account.starttls:
                client: imaplib.IMAP4 = imaplib.IMAP4(
                    account.host, account.port, timeout=account.timeout
                )
                client.starttls(ssl_context=context)
            else:
                client = imaplib.IMAP4_SSL(
                    account.host, account.port, ssl_context=context, timeout=account.timeout
                )
        except ssl.SSLCertVerificationError as error:
            raise MailboxRefused(
                f"the IMAP server {account.host}:{account.port} was refused: its certificate "
                f"is not trusted ({error.verify_message})"
            ) from error
        except (ssl.SSLError, imaplib.IMAP4.error) as error:
            raise MailboxRefused(
                f"TLS with the IMAP server {account.host}:{account.port} failed: {error}"
            ) from error
        except OSError as error:
            raise MailboxUnreachable(
                f"the IMAP server {account.host}:{account.port} could not be reached: {error}"
            ) from error
        self._client = client
        try:
            client.login(account.user, account.password)
        except imaplib.IMAP4.abort as error:
            self.close()
            raise MailboxUnreachable(f"{self.where}: connection lost at login: {error}") from error
        except imaplib.IMAP4.error as error:
            self.close()
            raise MailboxRefused(
                f"the IMAP server refused the login of {account.user!r}: {_text(error)}"
            ) from error
        except OSError as error:
            self.close()
            raise MailboxUnreachable(f"{self.where}: connection lost at login: {error}") from error
        self._uidvalidity = self._select()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            with suppress(OSError):
                client.shutdown()

    def fetch_since(
        self,
        last_uid: int,
        uidvalidity: int | None,
        *,
        max_count: int = DEFAULT_BATCH_COUNT,
        max_bytes: int = DEFAULT_BATCH_BYTES,
        max_message_bytes: int = DEFAULT_MESSAGE_BYTES,
    ) -> MailBatch:
        """The mails above `last_uid`, oldest first: at most `max_count`, and at most
        `max_bytes` together (always at least one); a mail over `max_message_bytes` comes
        cut to that many bytes with `truncated`. `uidvalidity`: the one stored with
        `last_uid` (None the first time); another one raises UidValidityChanged."""
        if uidvalidity is not None and uidvalidity != self._uidvalidity:
            raise UidValidityChanged(self.account.folder, uidvalidity, self._uidvalidity)
        uids = [uid for uid in self._search_above(last_uid) if uid > last_uid]
        sizes = self._sizes(uids[:max_count]) if uids else {}
        mails: list[FetchedMail] = []
        total = 0
        for uid in uids[:max_count]:
            size = sizes.get(uid)
            if size is None:
                continue  # expunged meanwhile
            wanted = min(size, max_message_bytes)
            if mails and total + wanted > max_bytes:
                break
            raw = self._fetch(uid, max_message_bytes if size > max_message_bytes else None)
            mails.append(FetchedMail(uid, raw, size, truncated=size > max_message_bytes))
            total += len(raw)
        last_returned = mails[-1].uid if mails else last_uid
        return MailBatch(
            uidvalidity=self._uidvalidity,
            mails=tuple(mails),
            more=any(uid > last_returned for uid in uids),
        )

    def mark_done(self, uid: int) -> None:
        """Flag the mail \\Seen, or move it to `done_folder`; harmless when done already."""
        if self.account.done_folder is None:
            self._uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Seen)")
        else:
            self._uid("MOVE", str(uid), _quoted(self.account.done_folder))

    # The IMAP exchanges

    def _select(self) -> int:
        folder = _quoted(self.account.folder)
        client = self._connected()
        self._call("SELECT", lambda: client.select(folder))
        _, data = client.response("UIDVALIDITY")
        for item in data:
            if isinstance(item, bytes) and item.isdigit():
                return int(item)
        status = self._call("STATUS", lambda: client.status(folder, "(UIDVALIDITY)"))
        for item in status:
            if isinstance(item, bytes) and (found := _UIDVALIDITY.search(item)):
                return int(found.group(1))
        raise MailboxRefused(f"{self.where}: the server gave no UIDVALIDITY")

    def _search_above(self, last_uid: int) -> list[int]:
        data = self._uid("SEARCH", "UID", f"{last_uid + 1}:*")
        uids: list[int] = []
        for item in data:
            if isinstance(item, bytes):
                uids += [int(word) for word in item.split() if word.isdigit()]
        return sorted(set(uids))

    def _sizes(self, uids: list[int]) -> dict[int, int]:
        data = self._uid("FETCH", ",".join(map(str, uids)), "(RFC822.SIZE)")
        sizes: dict[int, int] = {}
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if not isinstance(line, bytes):
                continue
            uid, size = _UID.search(line), _SIZE.search(line)
            if uid and size:
                sizes[int(uid.group(1))] = int(size.group(1))
        return sizes

    def _fetch(self, uid: int, cut_at: int | None) -> bytes:
        section = "BODY.PEEK[]" if cut_at is None else f"BODY.PEEK[]<0.{cut_at}>"
        data = self._uid("FETCH", str(uid), f"(UID {section})")
        for item in data:
            found = _UID.search(item[0]) if isinstance(item, tuple) else None
            if found is not None and int(found.group(1)) == uid:
                return bytes(item[1])
        raise MailboxUnreachable(f"{self.where}: the server sent no body for UID {uid}")

    def _connected(self) -> imaplib.IMAP4:
        if self._client is None:
            raise MailboxUnreachable(f"{self.where}: not connected (open() first)")
        return self._client

    def _uid(self, command: str, *args: str) -> list[Any]:
        client = self._connected()
        return self._call(f"UID {command}", lambda: client.uid(command, *args))

    def _call(self, name: str, exchange: Callable[[], tuple[str, list[Any]]]) -> list[Any]:
        try:
            status, data = exchange()
        except (imaplib.IMAP4.abort, OSError) as error:  # cut, reset or timed out
            self._drop()
            raise MailboxUnreachable(
                f"{self.where}: the connection was lost during {name}: {error}"
            ) from error
        except imaplib.IMAP4.error as error:
            raise MailboxRefused(f"{self.where}: {name} refused: {_text(error)}") from error
        if status != "OK":
            raise MailboxRefused(f"{self.where}: {name} answered {status}: {_text(data)}")
        return list(data)

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None and _has_socket(client):
            with suppress(OSError):
                client.shutdown()


def _has_socket(client: imaplib.IMAP4) -> bool:
    return isinstance(getattr(client, "sock", None), socket.socket)


def _quoted(name: str) -> str:
    if any(ch in name for ch in "\r\n\0"):
        raise MailboxRefused(f"a folder name may not hold line breaks: {name!r}")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(value: object) -> str:
    if isinstance(value, imaplib.IMAP4.error) and value.args:
        value = value.args[0]
    if isinstance(value, list) and value:
        value = value[-1]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
