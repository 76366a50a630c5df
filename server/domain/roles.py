"""Technician roles and the principal an authenticated call runs as."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.IntEnum):
    """Ordered: a higher role can do everything a lower one can."""

    L1 = 1
    L2 = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}: expected l1, l2 or admin") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a technician or admin identified by an API token."""

    user_id: int
    name: str
    role: Role

    def at_least(self, role: Role) -> bool:
        return self.role >= role
