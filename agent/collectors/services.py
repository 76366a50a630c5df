"""Service facts: failed systemd units, automatic Windows services that are not running,
launchd jobs that exited with an error."""

from __future__ import annotations

from sonde.agent.collectors.context import CollectContext
from sonde.agent.collectors.platform_parts import PlatformParts
from sonde.v1 import diagnostics_pb2


def collect_services(ctx: CollectContext, parts: PlatformParts) -> diagnostics_pb2.ServiceFacts:
    return parts.service_facts()
