"""`sonde-agent collect` on a Mac's recorded outputs: the battery's condition, each pending
update instead of a restart flag macOS does not have, FileVault by its name; an update's
title from a hostile listing printed inert."""

from __future__ import annotations

import re
from pathlib import Path

from sonde.agent.checks import evaluate
from sonde.agent.collect_cmd import render_text
from sonde.agent.collectors.macos.outputs import MacOutputs, macos_facts
from sonde.v1 import diagnostics_pb2

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "macos"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def rendered(listing: str) -> str:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.collected_at.GetCurrentTime()
    macos_facts(
        MacOutputs(
            system_profiler=fixture("system_profiler_worn_battery_full_disk.json"),
            pmset_batt=fixture("pmset_batt_charging.txt"),
            softwareupdate_list=listing,
            fdesetup_status=fixture("fdesetup_off.txt"),
        )
    ).into(snapshot)
    return render_text(snapshot, evaluate(snapshot), colour=False)


def test_a_mac_shows_its_battery_condition_updates_and_filevault() -> None:
    text = rendered(fixture("softwareupdate_list_security.txt"))
    assert "  Condition  Service Recommended\n" in text
    assert "  Wear       29 % (1032 cycles)\n" in text
    assert re.search(r"\n  macOS Ventura 13.6.8 +13.6.8, recommended, needs a restart\n", text)
    assert "Restart pending" not in text
    assert "\nFileVault\n  /  FullyDecrypted, protection Off\n" in text
    assert "BitLocker" not in text
    assert "WARNING  macos.filevault: FileVault is off" in text


def test_nothing_pending_and_a_hostile_title_printed_inert() -> None:
    assert "Pending updates  none (as of macOS's last check)" in rendered(
        fixture("softwareupdate_list_none.txt")
    )
    hostile = (
        "Software Update found the following new or updated software:\n"
        "* Label: evil-1\n"
        "\tTitle: Evil\x1b[2J\x1b]0;pwned\x07Update, Version: 1.0, Recommended: YES,\n"
    )
    text = rendered(hostile)
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "Evil\\x1b[2J" in text
