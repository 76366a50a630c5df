"""What a check may know beyond the snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sonde.agent.checks.thresholds import Thresholds


@dataclass(frozen=True)
class CheckContext:
    # The server's clock when it received the snapshot; None on the workstation
    # (clock skew is then not evaluated).
    reference_time: datetime | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
