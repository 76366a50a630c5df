"""Pending reboot and updates, where the OS says so cheaply (flags and files, no searches)."""

from __future__ import annotations

from sonde.agent.collectors.context import CollectContext
from sonde.agent.collectors.platform_parts import PlatformParts
from sonde.v1 import diagnostics_pb2


def collect_updates(ctx: CollectContext, parts: PlatformParts) -> diagnostics_pb2.UpdateFacts:
    return parts.update_facts()
