"""Mail that no person wrote: auto-replies, bounces, mailing-list traffic (RFC 3834, RFC 3464).

Such a mail still becomes a ticket or a comment (nothing is lost), but the helpdesk does not
answer it: mailing a bounce back, or an out-of-office, is how two robots start a loop that
fills a mailbox and a ticket queue in minutes.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

_SENDERS = ("mailer-daemon@", "postmaster@", "noreply@", "no-reply@", "donotreply@")
_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}


def is_automatic(raw: bytes) -> bool:
    """True for a mail an automaton sent: Auto-Submitted other than `no`, a delivery or
    disposition report, a bulk or list Precedence, an X-Autoreply, an empty Return-Path, or a
    daemon's sender address. Never raises."""
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw[: 256 * 1024])
    except Exception:  # a mail that cannot be read is not known to be automatic
        return False

    def header(name: str) -> str:
        return str(headers.get(name, "") or "").strip().lower()

    auto = header("Auto-Submitted")
    if auto and auto != "no":
        return True
    if header("Content-Type").startswith("multipart/report"):
        return True
    if header("Precedence") in _PRECEDENCE or header("X-Autoreply") or header("X-Autorespond"):
        return True
    if header("Return-Path") == "<>":
        return True
    sender = header("From")
    return any(daemon in sender for daemon in _SENDERS)
