"""A workstation's local user as the agent names them (its kernel's word, sent by the agent):
the requester of the tickets asked for from there (`sonde-agent help`), who runs self-service
fixes (`sonde-agent fix`) and rates their resolved requests (`sonde-agent rate`)."""

from __future__ import annotations

from sonde.server.domain.text import sanitized

MAX_LOCAL_USER_CHARS = 64
UNKNOWN_USER = "unknown user"


def local_requester(local_user: str) -> str:
    """The user name as a ticket's requester line stores it and as it is compared: control
    characters dropped, at most MAX_LOCAL_USER_CHARS."""
    return sanitized(local_user, max_chars=MAX_LOCAL_USER_CHARS) or UNKNOWN_USER
