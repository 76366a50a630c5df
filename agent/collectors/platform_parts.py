"""The OS-specific half of the collectors: what each of linux/, windows/ and macos/ provides.

Each platform package has a module `parts` with exactly these functions; the registry picks
one at run time, so an OS module is only imported on the OS it serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sonde.v1 import diagnostics_pb2


@dataclass(frozen=True)
class OsRelease:
    name: str  # "Ubuntu 24.04.1 LTS", "Windows 11 Pro 23H2", "macOS 14.5"
    version: str  # kernel or build


@dataclass(frozen=True)
class DefaultRoute:
    gateway: str
    interface: str


@dataclass(frozen=True)
class BatteryCapacity:
    design_mwh: int
    full_mwh: int
    cycle_count: int = 0
    condition: str = ""  # macOS: Normal, Service Recommended, ... ("" where the OS says none)


class PlatformParts(Protocol):
    """Every function raises CollectorUnavailable when the OS does not give the fact."""

    def os_release(self) -> OsRelease: ...

    def cpu_model(self) -> str: ...

    def default_route(self) -> DefaultRoute | None: ...

    def dns_servers(self) -> list[str]: ...

    def proxy_settings(self) -> diagnostics_pb2.ProxySettings | None: ...

    def machine_proxy(self) -> diagnostics_pb2.ProxySettings | None:
        """The machine-wide proxy services use (None: direct); unavailable where the OS has
        none apart from the user's."""
        ...

    def battery_capacity(self) -> BatteryCapacity | None: ...

    def service_facts(self) -> diagnostics_pb2.ServiceFacts: ...

    def software_inventory(self) -> diagnostics_pb2.SoftwareFacts: ...

    def update_facts(self) -> diagnostics_pb2.UpdateFacts: ...
