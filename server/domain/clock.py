"""The one place domain code reads the time, so tests and benchmarks can pin it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def require_aware(at: datetime, what: str = "time") -> datetime:
    """Timestamps crossing into the domain must carry their timezone."""
    if at.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {at.isoformat()}")
    return at.astimezone(UTC)
