"""The macOS collectors' command side, run where macOS's programs are missing (this test
machine): each says which program could not run, as an unavailable reason, never an
exception of another kind; and the registry's macOS-only collector is FileVault's."""

from __future__ import annotations

import shutil

import pytest

from sonde.agent.collectors.context import CollectContext
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.macos import parts
from sonde.agent.collectors.registry import macos_only_collectors

pytestmark = pytest.mark.skipif(
    any(shutil.which(p) for p in ("softwareupdate", "fdesetup", "ioreg")),
    reason="macOS's own programs are here: this test is for a machine without them",
)


def test_pending_updates_say_softwareupdate_could_not_run() -> None:
    with pytest.raises(CollectorUnavailable, match=r"^softwareupdate could not run"):
        parts.update_facts()


def test_filevault_says_fdesetup_could_not_run() -> None:
    with pytest.raises(CollectorUnavailable, match=r"^fdesetup could not run"):
        parts.encryption_facts()


def test_the_battery_says_ioreg_could_not_run() -> None:
    with pytest.raises(CollectorUnavailable, match=r"^ioreg could not run"):
        parts.battery_capacity()


def test_the_macos_only_collector_is_filevaults_encryption() -> None:
    (collector,) = macos_only_collectors()
    assert (collector.name, collector.field, collector.timeout_s) == (
        "encryption",
        "encryption",
        3.0,
    )
    with pytest.raises(CollectorUnavailable, match="fdesetup"):
        collector.collect(CollectContext())
