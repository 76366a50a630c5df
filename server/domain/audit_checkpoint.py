"""A checkpoint of the audit chain's head, kept outside the database.

Someone who can write to the database but has not the audit key cannot rewrite rows (their
links would not verify), but can delete the newest rows and move the head back with them, or
empty both tables. A checkpoint (how many rows the chain had and the hash of the last one,
when) written elsewhere catches that: the chain must still reach that row with that hash.
The checkpoint carries an HMAC with the audit key, so it cannot be edited either; the server
writes it to its data folder and to the system journal (server/audit_checkpoints.py).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import datetime

from sonde.server.domain.audit_rows import AuditKey
from sonde.server.domain.clock import require_aware

CHECKPOINT_VERSION = 1


class CheckpointUnreadable(ValueError):
    """The checkpoint is not one this server wrote: says why."""


@dataclass(frozen=True)
class AuditCheckpoint:
    rows: int  # the chain's length then: its last row's id
    head_hash: str  # that row's hash
    at: datetime | None  # None: given by hand (copied from the journal), not read from a file

    def __post_init__(self) -> None:
        if self.at is not None:
            require_aware(self.at)
        if self.rows < 0:
            raise ValueError(f"a checkpoint cannot record {self.rows} rows")

    @property
    def taken(self) -> str:
        """How messages name it."""
        return (
            "the checkpoint given"
            if self.at is None
            else f"the checkpoint taken {self.at.isoformat()}"
        )

    def _signed_text(self) -> bytes:
        if self.at is None:
            raise ValueError("a checkpoint without its time cannot be signed")
        lines = (f"sonde audit checkpoint v{CHECKPOINT_VERSION}", self.rows, self.head_hash)
        return "\n".join((*map(str, lines), self.at.isoformat())).encode()

    def mac(self, key: AuditKey) -> str:
        return key.link(self._signed_text())

    def encode(self, key: AuditKey) -> bytes:
        return (
            json.dumps(
                {
                    "version": CHECKPOINT_VERSION,
                    "rows": self.rows,
                    "head_hash": self.head_hash,
                    "at": None if self.at is None else self.at.isoformat(),
                    "mac": self.mac(key),
                },
                indent=2,
            )
            + "\n"
        ).encode()

    @classmethod
    def decode(cls, data: bytes, key: AuditKey) -> AuditCheckpoint:
        """The checkpoint in `data`, whose MAC must verify with `key`."""
        try:
            fields = json.loads(data)
            if fields["version"] != CHECKPOINT_VERSION:
                raise CheckpointUnreadable(
                    f"version {fields['version']!r}, not {CHECKPOINT_VERSION}"
                )
            checkpoint = cls(
                rows=int(fields["rows"]),
                head_hash=str(fields["head_hash"]),
                at=datetime.fromisoformat(fields["at"]),
            )
            mac = str(fields["mac"])
        except CheckpointUnreadable:
            raise
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointUnreadable(f"not a checkpoint ({error})") from None
        if not hmac.compare_digest(mac.encode(), checkpoint.mac(key).encode()):
            raise CheckpointUnreadable(
                "its MAC does not verify with the audit key: it was changed outside Sonde, "
                "or written with another key"
            )
        return checkpoint
