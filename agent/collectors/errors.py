"""The one exception a collector raises when the OS or its permissions do not give a fact."""

from __future__ import annotations


class CollectorUnavailable(Exception):
    """The fact cannot be collected here; the message is read by a technician.

    Example: CollectorUnavailable("smartctl is not installed").
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
